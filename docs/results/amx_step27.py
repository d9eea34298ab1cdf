"""Twenty-seventh session (AMX Xeon): the real target's products as the compiled forward calls them
(per layer q / k / v as one call, o, gate / up as one, down; the lm_head: 113 calls, 3.09 GB) on
rowdot_amx and rowdot_il, and each linear alone on oneDNN's packed product (what inductor's freezing
runs), at 1-16 rows, timed interleaved (fastest of 3, median over ROUNDS rounds, a torch sum each
round).

    .venv/bin/python docs/results/amx_step27.py 4
"""

import os
import statistics as st
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import torch

from core import adapters, kernels, rowdot
from tools.bench.bound import bandwidth

T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 4
ROWS = (1, 2, 4, 8, 16)
torch.set_num_threads(2)
m = adapters.load(T, dtype="bfloat16").model
groups = []
for layer in m.model.layers:
    a, mlp = layer.self_attn, layer.mlp
    groups += [[a.q_proj, a.k_proj, a.v_proj], [a.o_proj], [mlp.gate_proj, mlp.up_proj], [mlp.down_proj]]
groups.append([m.lm_head])
with torch.inference_mode():
    calls = {
        "amx": [(lambda x, p=rowdot.pack_linears(g, amx=True): rowdot.linear_amx(x, *p)) for g in groups],
        "il": [(lambda x, p=rowdot.pack_linears(g): rowdot.linear(x, *p, interleaved=True)) for g in groups],
        "onednn": [
            (lambda x, g=g, ps=[kernels._pack(l.weight) for l in g]: [kernels.PATHS["packed"](x, p, l.bias) for p, l in zip(ps, g)])
            for g in groups
        ],
    }
    size = sum(sum(l.weight.numel() * 2 for l in g) for g in groups)
    res: dict = {}
    for _ in range(ROUNDS):
        res.setdefault("bw", []).append(bandwidth() / 1e9)
        for n in ROWS:
            xs = [torch.randn(n, g[0].in_features).bfloat16() for g in groups]
            for name, fs in calls.items():
                ts = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    for x, f in zip(xs, fs):
                        f(x)
                    ts.append(time.perf_counter() - t0)
                res.setdefault((name, n), []).append(min(ts) * 1e3)
print(f"{size / 1e9:.2f} GB; torch sum GB/s by round {[round(b, 1) for b in res['bw']]}")
for n in ROWS:
    print(f"{n} rows: " + "; ".join(f"{k} {st.median(res[(k, n)]):.1f} ms ({size / st.median(res[(k, n)]) / 1e6:.1f} GB/s)" for k in calls))
