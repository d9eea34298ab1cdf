"""Thirty-third session: the real target's float32 lm_head in full on rowdot_f32, oneDNN's packed product and F.linear
at 1-8 rows (screen_fp32_full33.log): why the library path's full head stays oneDNN's."""

import glob
import os
import sys
import time

import torch
from safetensors import safe_open

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from core import kernels, rowdot

torch.set_num_threads(2)
P = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
W = None
for f in glob.glob(P + "/*.safetensors"):
    with safe_open(f, "pt") as h:
        for k in h.keys():
            if k in ("lm_head.weight", "model.embed_tokens.weight"):
                W = h.get_tensor(k).float().contiguous()
print(W.shape)
onednn = kernels.PATHS["packed"]
pk = kernels._pack(W)
for n in (1, 2, 4, 8):
    x = torch.randn(n, W.shape[1])
    fs = {
        "rowdot_f32": lambda: rowdot.linear(x, W),
        "oneDNN packed": lambda: onednn(x, pk, None),
        "F.linear": lambda: torch.nn.functional.linear(x, W),
    }
    for f in fs.values():
        f()
    res = {}
    for k, f in fs.items():
        best = 9
        for _ in range(5):
            t = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t)
        res[k] = round(best * 1e3, 2)
    print(n, res, flush=True)
