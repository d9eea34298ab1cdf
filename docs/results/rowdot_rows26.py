"""Twenty-sixth session: rowdot_il before (the twenty-fifth session's core/rowdot.c, built as
/tmp/s26/old.so) and after (two or three rows run as a block of four; /tmp/s26/new.so) on the real
target's interleaved copies (113 calls, 3.09 GB, in the step's order), at each row count, timed
interleaved (fastest of 3, median over ROUNDS rounds, a torch sum each round); outputs compared.

    git show e942e13~1:core/rowdot.c > /tmp/s26/old.c
    gcc -O3 -march=native -fopenmp -fPIC -shared /tmp/s26/old.c -o /tmp/s26/old.so
    gcc -O3 -march=native -fopenmp -fPIC -shared core/rowdot.c -o /tmp/s26/new.so
    .venv/bin/python docs/results/rowdot_rows26.py 1,2,3,4 8
"""

import ctypes
import os
import statistics as st
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ["SPECSCOPE_COMPILED_PRODUCTS"] = "rowdot"
import torch

from core import adapters, compiled
from tools.bench.bound import bandwidth

T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
ROWS = [int(a) for a in sys.argv[1].split(",")] if len(sys.argv) > 1 else [1, 2, 3, 4]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
tgt = adapters.load(T, dtype="bfloat16")
d = compiled.CompiledDecoder(tgt.model)
libs = {}
for name in ("old", "new"):
    lib = ctypes.CDLL(f"/tmp/s26/{name}.so")
    lib.rowdot_il.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 3 + [ctypes.c_int]
    libs[name] = lib


def run(lib, xs, packs, ys, n):
    for x, (w, b), y in zip(xs, packs, ys):
        lib.rowdot_il(x.data_ptr(), w.data_ptr(), None if b is None else b.data_ptr(), y.data_ptr(), n, w.shape[1], w.shape[0], 2)


with torch.inference_mode():
    d._make_packs()
    packs = [p for layer in d._packs for p in layer.values()]
    size = sum(w.numel() * 2 for w, _ in packs)
    res: dict = {}
    for _ in range(ROUNDS):
        res.setdefault("bw", []).append(bandwidth() / 1e9)
        for n in ROWS:
            xs = [torch.randn(n, w.shape[1]).bfloat16() for w, _ in packs]
            ys = [torch.empty(n, w.shape[0]) for w, _ in packs]
            outs = {}
            for name, lib in libs.items():
                ts = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    run(lib, xs, packs, ys, n)
                    ts.append(time.perf_counter() - t0)
                res.setdefault((name, n), []).append(min(ts) * 1e3)
                outs[name] = [y.clone() for y in ys]
            assert all(torch.equal(a, b) for a, b in zip(outs["old"], outs["new"])), n
print(f"{size / 1e9:.2f} GB; torch sum GB/s by round {[round(b, 1) for b in res['bw']]}; old and new outputs equal")
for n in ROWS:
    o, nw = st.median(res[("old", n)]), st.median(res[("new", n)])
    by = f"by round before {[round(x, 1) for x in res[('old', n)]]} after {[round(x, 1) for x in res[('new', n)]]}"
    print(f"{n} rows: before {o:.1f} ms, after {nw:.1f} ms ({o / nw:.2f}x); {by}")
