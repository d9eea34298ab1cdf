"""Thirty-sixth session: where the eager prefill of a 143-token held-out prompt goes (transformers,
bfloat16, the prompt as our engine feeds it: chat template, the last position's logits only).

    python docs/results/prefill_profile36.py
"""

import json
import os

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(2)
p = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
tok = AutoTokenizer.from_pretrained(p)
m = AutoModelForCausalLM.from_pretrained(p, dtype=torch.bfloat16).eval()
prompts = [json.loads(line)["prompt"] for line in open(os.path.join(os.path.dirname(__file__), "e3_heldout_prompts.jsonl"))]
ids = tok.apply_chat_template([{"role": "user", "content": prompts[2]}], add_generation_prompt=True, return_tensors="pt")
ids = ids if torch.is_tensor(ids) else ids["input_ids"]
print("prompt tokens", ids.shape[1])
with torch.inference_mode():
    for _ in range(2):
        m(ids, logits_to_keep=1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        m(ids, logits_to_keep=1)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
