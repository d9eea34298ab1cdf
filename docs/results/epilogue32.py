"""Thirty-second session: rowdot_il builds (/tmp/s32/NAME.so) on the real target's 197 products, packed as
the compiled forward packs them (layout LAYOUT, 3.09 GB), per row count: fastest of 3, median over ROUNDS
rounds interleaved, a torch sum each round; the builds' outputs checked equal, bit for bit.

    gcc -O3 -march=native -fopenmp -fPIC -shared core/rowdot.c -o /tmp/s32/NAME.so   # one per variant
    .venv/bin/python docs/results/epilogue32.py pf8192,b4,y4,z4 1,2,3,4,5,6,8 3
"""

import ctypes
import os
import statistics as st
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import torch
from core import adapters, rowdot
from tools.bench.bound import bandwidth

T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
NAMES = sys.argv[1].split(",")
ROWS = [int(a) for a in sys.argv[2].split(",")]
ROUNDS = int(sys.argv[3])
LAYOUT = int(os.environ.get("LAYOUT", "4"))
torch.set_num_threads(2)
tgt = adapters.load(T, dtype="bfloat16", kernels="stock")
libs = {}
for name in NAMES:
    lib = ctypes.CDLL(f"/tmp/s32/{name}.so")
    lib.rowdot_il.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 3 + [ctypes.c_int] * 2
    libs[name] = lib
m = tgt.model
groups = []
for layer in m.model.layers:
    a, mlp = layer.self_attn, layer.mlp
    groups += [[a.q_proj, a.k_proj, a.v_proj], [a.o_proj], [mlp.gate_proj, mlp.up_proj], [mlp.down_proj]]
groups.append([m.lm_head])
with torch.inference_mode():
    packs = []
    for g in groups:
        w = torch.cat([l.weight for l in g]).contiguous()
        b = None if g[0].bias is None else torch.cat([l.bias.float() for l in g]).contiguous()
        packs.append((rowdot.pack(w, LAYOUT & 15), b, w.shape))
    del tgt, m
    size = sum(s[0] * s[1] * 2 for _, _, s in packs)
    res = {}
    for _ in range(ROUNDS):
        res.setdefault("bw", []).append(bandwidth() / 1e9)
        for n in ROWS:
            xs = [torch.randn(n, s[1]).bfloat16() for _, _, s in packs]
            ys = [torch.empty(n, s[0]) for _, _, s in packs]
            outs = {}
            for name, lib in libs.items():
                ts = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    for x, (w, b, s), y in zip(xs, packs, ys):
                        lib.rowdot_il(
                            x.data_ptr(), w.data_ptr(), None if b is None else b.data_ptr(), y.data_ptr(), n, s[1], s[0], 2, LAYOUT
                        )
                    ts.append(time.perf_counter() - t0)
                res.setdefault((name, n), []).append(min(ts) * 1e3)
                outs[name] = [y.clone() for y in ys]
            first = outs[NAMES[0]]
            assert all(all(torch.equal(a, b) for a, b in zip(first, o)) for o in outs.values()), n
print(f"{size / 1e9:.2f} GB, layout {LAYOUT}; torch sum GB/s by round {[round(b, 1) for b in res['bw']]}; builds' outputs equal")
for n in ROWS:
    for name in libs:
        md = st.median(res[(name, n)])
        print(f"{n} rows {name:10s}: {md:6.1f} ms = {size / md / 1e6:5.1f} GB/s; by round {[round(x, 1) for x in res[(name, n)]]}")
