"""Thirty-second session: the real 0.5B drafter's acceptance as a chain of 3 on the bench's 8 held-out
prompts (64 tokens, T = 0, bfloat16 target), on its own weights and on the rounded copies the default
(SPECSCOPE_DRAFT_WEIGHTS=fastest) measured faster here. Prints per prompt tau and acceptance by depth,
then tau over all and the share of steps accepting at least 1, 2, 3 drafts.

    SPECSCOPE_KERNELS=stock SPECSCOPE_COMPILE=off python docs/results/draft_weights32.py DRAFTER 3   # its own weights
    SPECSCOPE_COMPILE=off python docs/results/draft_weights32.py DRAFTER 3                           # eager, int8 lm_head
    WARM=1 TH=2 python docs/results/draft_weights32.py DRAFTER 3                                     # compiled, i8 products
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import torch

from core import api
from core.pairs import load_pair

torch.set_num_threads(int(os.environ.get("TH", "1")))
T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
D, gamma = sys.argv[1], int(sys.argv[2])
here = os.path.dirname(__file__)
prompts = [json.loads(line)["prompt"] for line in open(os.path.join(here, "e3_heldout_prompts.jsonl"))][:8]
pair = load_pair(T, D, dtype="bfloat16", mode="multimodal")
spec = api.DraftSpec(strategy="chain", gamma=gamma)
if os.environ.get("WARM"):
    api.warm(pair, prompts[0], None, spec)
    lm = pair.drafter.lm
    print("paths", pair.target.path, lm.path, lm.compiled.products if lm.compiled else None, flush=True)
new = steps = 0
pos = [0] * gamma
for p in prompts:
    tr = api.run(pair, p, None, spec, api.SamplingConfig(), 64)
    s = tr.summary()
    print(s["tau"], s["acceptance_by_depth"], s["new_tokens"], flush=True)
    new += s["new_tokens"] - 1
    steps += s["target_forwards"] - 1
    acc = [len(st.accepted) for st in tr.steps]
    for d in range(gamma):
        pos[d] += sum(1 for a in acc if a > d)
print("tau", new / steps, "by position", [round(p / steps, 3) for p in pos])
