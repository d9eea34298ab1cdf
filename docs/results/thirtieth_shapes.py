"""Thirtieth session (Zen 5 EPYC): the coder head on the real target, plain decoding interleaved with
each draft shape, 8 held-out prompts x 64 tokens (NP=4: fewer), one process, the target's forward as
`core.api.warm` settles it. Also prints the products' time at one row on both paths and the auto
policy's cost curve.

    .venv/bin/python docs/results/thirtieth_shapes.py trees    # auto, a chain of 3, EAGLE-2 trees of 4-12 nodes
    .venv/bin/python docs/results/thirtieth_shapes.py chains   # auto, chains of 2, 3 and 4

`trees` ran before rowdot_il's layouts, when the compiled forward took the library's products (today:
SPECSCOPE_COMPILED_PRODUCTS=library for the same forward), and before the curve line was printed
(thirtieth_shapes_library.log); `chains` after, on rowdot_il in layout 4 (thirtieth_chains_rowdot.log).
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
SHAPES = {
    "trees": {
        "dyn_b4": DraftSpec("dynamic", depth=3, top_k=2, budget=4),
        "dyn_b6": DraftSpec("dynamic", depth=4, top_k=2, budget=6),
        "dyn_b8": DraftSpec("dynamic", depth=4, top_k=3, budget=8),
        "dyn_b12": DraftSpec("dynamic", depth=5, top_k=4, budget=12),
    },
    "chains": {"chain2": DraftSpec("chain", 2), "chain4": DraftSpec("chain", 4)},
}
specs = {"auto": spec_for("auto"), "chain3": DraftSpec("chain", 3), **SHAPES[sys.argv[1] if len(sys.argv) > 1 else "trees"]}
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
