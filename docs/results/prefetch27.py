"""Twenty-seventh session: rowdot_il built with several prefetch distances (RD_IL_PF, bytes ahead on a
block's stream; /tmp/s27/NAME.so) and oneDNN's packed product (core.kernels "packed", what inductor's
freezing runs), on the real target's weights in the step's order (197 products, 3.09 GB), at each
row count, timed interleaved (fastest of 3, median over ROUNDS rounds, a torch sum each round).

    for d in 0 2048 4096 8192 16384 32768; do
      gcc -O3 -march=native -fopenmp -fPIC -shared -DRD_IL_PF=$d core/rowdot.c -o /tmp/s27/pf$d.so; done
    .venv/bin/python docs/results/prefetch27.py pf0,pf4096,pf8192 1,2,4 5
"""

import ctypes
import os
import statistics as st
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ["SPECSCOPE_COMPILED_PRODUCTS"] = "rowdot"
import torch

from core import adapters, compiled, kernels
from tools.bench.bound import bandwidth

T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
NAMES = sys.argv[1].split(",") if len(sys.argv) > 1 else ["pf0", "pf8192"]
ROWS = [int(a) for a in sys.argv[2].split(",")] if len(sys.argv) > 2 else [1, 2, 4]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 4
torch.set_num_threads(2)
tgt = adapters.load(T, dtype="bfloat16")
d = compiled.CompiledDecoder(tgt.model)
libs = {}
for name in NAMES:
    lib = ctypes.CDLL(f"/tmp/s27/{name}.so")
    lib.rowdot_il.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 3 + [ctypes.c_int]
    libs[name] = lib


def run_il(lib, xs, packs, ys, n):
    for x, (w, b), y in zip(xs, packs, ys):
        lib.rowdot_il(x.data_ptr(), w.data_ptr(), None if b is None else b.data_ptr(), y.data_ptr(), n, w.shape[1], w.shape[0], 2)


def run_lib(xs, lp, n):
    for x, p in zip(xs, lp):
        kernels.PATHS["packed"](x, p, None)


with torch.inference_mode():
    d._make_packs()
    packs = [p for layer in d._packs for p in layer.values()]
    size = sum(w.numel() * 2 for w, _ in packs)
    lins = [m.weight for m in tgt.model.modules() if isinstance(m, torch.nn.Linear)]
    lp = [kernels._pack(w) for w in lins]
    res: dict = {}
    for _ in range(ROUNDS):
        res.setdefault("bw", []).append(bandwidth() / 1e9)
        for n in ROWS:
            xs = [torch.randn(n, w.shape[1]).bfloat16() for w, _ in packs]
            ys = [torch.empty(n, w.shape[0]) for w, _ in packs]
            xl = [torch.randn(n, w.shape[1]).bfloat16() for w in lins]
            outs = {}
            for name in [*libs, "onednn"]:
                ts = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    run_lib(xl, lp, n) if name == "onednn" else run_il(libs[name], xs, packs, ys, n)
                    ts.append(time.perf_counter() - t0)
                res.setdefault((name, n), []).append(min(ts) * 1e3)
                if name != "onednn":
                    outs[name] = [y.clone() for y in ys]
            first = outs[NAMES[0]]
            assert all(all(torch.equal(a, b) for a, b in zip(first, o)) for o in outs.values()), n
print(f"{size / 1e9:.2f} GB; torch sum GB/s by round {[round(b, 1) for b in res['bw']]}; rowdot_il builds' outputs equal")
for n in ROWS:
    for name in [*libs, "onednn"]:
        m = st.median(res[(name, n)])
        print(f"{n} rows {name:8s}: {m:6.1f} ms = {size / m / 1e6:5.1f} GB/s; by round {[round(x, 1) for x in res[(name, n)]]}")
