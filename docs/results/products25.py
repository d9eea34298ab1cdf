"""Twenty-fifth session: the products of one step of the 1.5B target (q/k/v and gate/up fused, 28
layers and the lm_head: 3.09 GB of bfloat16 weights) at 1-8 rows on rowdot_il (core/rowdot.c, the
weights laid out as it reads them), rowdot_dpbf16 (plain layout) and oneDNN's packed product, in
interleaved rounds, a torch sum of 512 MiB before each round (the machine's read rate moves).

    .venv/bin/python docs/results/products25.py
"""

import os
import statistics as st
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import torch

from core import rowdot

torch.set_num_threads(2)
SHAPES = [(2048, 1536), (1536, 1536), (17920, 1536), (1536, 8960)] * 28 + [(151936, 1536)]
g = torch.Generator().manual_seed(0)
plain = [(torch.randn(o, k, generator=g) * 0.02).bfloat16() for o, k in SHAPES]
interleaved = [rowdot.pack(w) for w in plain]
packed = [torch.ops.mkldnn._reorder_linear_weight(w, 4) for w in plain]
big = torch.ones(512 * 2**20 // 4)


def run(kind: str, n: int) -> float:
    xs = {k: torch.randn(n, k).bfloat16() for k in (1536, 8960)}
    t0 = time.perf_counter()
    if kind == "rowdot_il":
        for w in interleaved:
            rowdot.linear(xs[w.shape[1]], w, None, interleaved=True)
    elif kind == "rowdot_dpbf16":
        for w in plain:
            rowdot.linear(xs[w.shape[1]], w, None)
    else:
        for p, w in zip(packed, plain):
            torch.ops.mkldnn._linear_pointwise(xs[w.shape[1]], p, None, "none", [], "")
    return (time.perf_counter() - t0) * 1e3


KINDS = ("rowdot_il", "rowdot_dpbf16", "onednn_packed")
res: dict = {}
for _ in range(4):
    t0 = time.perf_counter()
    big.sum()
    res.setdefault("bw", []).append(big.numel() * 4 / (time.perf_counter() - t0) / 1e9)
    for n in (1, 2, 3, 4, 8):
        for kind in KINDS:
            res.setdefault((kind, n), []).append(run(kind, n))
print("torch sum GB/s by round", [round(b) for b in res["bw"]])
for n in (1, 2, 3, 4, 8):
    print(f"{n} rows, ms (median of rounds):", {k: round(st.median(res[(k, n)]), 1) for k in KINDS})
