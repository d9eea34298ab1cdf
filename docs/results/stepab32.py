"""Thirty-second session: the compiled one-step forward of the real target (300 cached tokens, rowdot_il
products), the rowdot_il kernel behind the operator swapped between builds (/tmp/rd_NAME.so: the old
core/rowdot.c, the new one, a no-op), best of 3 rounds x 22 steps each, one process.

    SPECSCOPE_COMPILED_PRODUCTS=rowdot python docs/results/stepab32.py old new
"""

import ctypes
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import torch
from core.pairs import load_target
from core import compiled, rowdot, rowdot_ops

torch.set_num_threads(2)
T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
t = load_target(T, "bfloat16")
fast = compiled.CompiledDecoder(t.model)
print("products", fast.products, "layout", rowdot.layout(), flush=True)
t0 = time.time()
fast.warm()
print("warm", time.time() - t0, flush=True)
kv = fast.empty_kv(300)
kv.length = 300


def run(n, iters=25):
    ts = []
    for _i in range(iters):
        t0 = time.perf_counter()
        fast.forward(kv, list(range(n)), torch.arange(300, 300 + n), None)
        ts.append(time.perf_counter() - t0)
        kv.length = 300
    return min(ts[3:])


ops = rowdot_ops._loaded[0]
i8 = ctypes.cast(rowdot._lib().rowdot_i8, ctypes.c_void_p).value
libs = {v: ctypes.CDLL(f"/tmp/rd_{v}.so") for v in sys.argv[1:]}
best = {}
for _r in range(3):
    for v, l in libs.items():
        ops.specscope_rowdot_ops_init(ctypes.cast(l.rowdot_il, ctypes.c_void_p).value, None, i8)
        for n in (1, 2, 3, 4, 6, 8):
            best[(v, n)] = min(best.get((v, n), 9), run(n))
for n in (1, 2, 3, 4, 6, 8):
    print(n, "  ".join(f"{v} {best[(v, n)] * 1e3:.2f}" for v in libs), flush=True)
