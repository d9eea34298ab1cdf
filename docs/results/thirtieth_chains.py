"""Thirtieth session (Zen 5 EPYC): the coder head on the real target, auto against fixed chains of 2, 3
and 4, plain decoding interleaved, 8 held-out prompts x 64 tokens, one process (the target's
forward as `core.api.warm` settles it: here compiled, rowdot_il in layout 4). Also prints the
products' time at one row on both paths and the auto policy's cost curve.

    .venv/bin/python docs/results/thirtieth_chains.py     # (NP=4: fewer prompts)
"""

import os
import sys
import time
import json
import torch

sys.path.insert(0, ".")  # run from the checkout root
from core.api import load_pair, run, warm, DraftSpec, spec_for
from core.policy import AutoPolicy

T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
prompts = [json.loads(l)["prompt"] for l in open("docs/results/e3_heldout_prompts.jsonl")][: int(os.environ.get("NP", 8))]


def sumbw():
    x = torch.ones(256 << 20, dtype=torch.bfloat16)
    best = 9
    for _ in range(5):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    return round(x.numel() * 2 / best / 1e9, 1)


t0 = time.time()
pair = load_pair(T, "eagle3:assets/drafters/eagle3_coder", dtype="bfloat16")
warm(pair, prompts[0], spec=spec_for("auto"))
print("warm", round(time.time() - t0), pair.target.path, flush=True)
from core import compiled  # noqa: E402  as the script ran: imported where the products are timed

compiled.PRODUCT_ROWS = (1,)
print(
    "step products at 1 row (scaled), s:",
    compiled._time_products(compiled._step_calls(pair.target.model), ("rowdot", "library"), rounds=5),
    flush=True,
)
print("bw", sumbw(), flush=True)
specs = {
    "auto": spec_for("auto"),
    "chain2": DraftSpec("chain", 2),
    "chain3": DraftSpec("chain", 3),
    "chain4": DraftSpec("chain", 4),
}
for name, sp in specs.items():
    if name != "auto":
        run(pair, prompts[0], spec=sp, max_new_tokens=8, detail=False)
policy = AutoPolicy.measured(pair.target)
print("curve", policy.to_json()["costs"], flush=True)
agg = {k: [0.0, 0, 0, 0.0, 0, 0] for k in ["plain", *specs]}  # wall, tokens, steps, verify, exact, n
for p in prompts:
    ref = run(pair, p, speculative=False, max_new_tokens=64, detail=False)
    a = agg["plain"]
    a[0] += ref.wall_s
    a[1] += len(ref.output)
    a[2] += len(ref.steps)
    a[3] += sum(s.t_verify for s in ref.steps)
    for name, sp in specs.items():
        kw = {"policy": policy} if name == "auto" else {}
        tr = run(pair, p, spec=sp, max_new_tokens=64, detail=False, **kw)
        a = agg[name]
        a[0] += tr.wall_s
        a[1] += len(tr.output)
        a[2] += len(tr.steps)
        a[3] += sum(s.t_verify for s in tr.steps)
        a[4] += tr.output == ref.output
        a[5] += 1
    print("prompt done", flush=True)
base = agg["plain"][1] / agg["plain"][0]
for k, (w, n, st, v, ex, m) in agg.items():
    print(f"{k:8s} tok/s {n / w:6.2f} x{n / w / base:5.2f} tau {n / st:5.2f} verify ms/step {1e3 * v / st:6.1f} exact {ex}/{m}", flush=True)
print("bw", sumbw(), flush=True)
