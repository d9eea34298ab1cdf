"""Thirty-sixth session: where a one-row compiled step of the real target goes (torch.profiler over 10
steps after 300 cached tokens of a held-out prompt, the lm_head screened as a greedy step takes it).

    python docs/results/step_profile36.py
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import torch
from torch.profiler import ProfilerActivity, profile

from core import compiled
from core.pairs import load_target

torch.set_num_threads(2)
T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
t = load_target(T, "bfloat16")
fast = compiled.CompiledDecoder(t.model)
fast.warm()
print("products", fast.products, "screened rows", sorted(fast.screen_rows), flush=True)
prompts = [json.loads(line) for line in open(os.path.join(os.path.dirname(__file__), "e3_heldout_prompts.jsonl"))]
ids = t.tokenizer.apply_chat_template([{"role": "user", "content": prompts[0]["prompt"]}], add_generation_prompt=True)
ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
ids = (ids + ids * 8)[:340]
P = 300
kv = fast.empty_kv(P)
kv.length = 0
for s in range(0, P, 100):
    fast.forward(kv, ids[s : s + 100], torch.arange(s, s + 100), None)


def step(n=1):
    fast.forward(kv, ids[P : P + n], torch.arange(P, P + n), None, True)
    kv.length = P


for _ in range(5):
    step()
ts = []
for _ in range(40):
    t0 = time.perf_counter()
    step()
    ts.append(time.perf_counter() - t0)
ts.sort()
print(f"one row: min {ts[0] * 1e3:.2f} median {ts[20] * 1e3:.2f} ms", flush=True)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(10):
        step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
