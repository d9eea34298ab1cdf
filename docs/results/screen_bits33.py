"""Thirty-third session: how many tokens a row a rigorous screen keeps with int8 (per row) against int4 / int5 copies
of the lm_head (per row or per group of columns): int4 keeps nearly the whole vocabulary (screen_bits33.log)."""

import json
import torch
import sys

sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__file__), '..', '..'))
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(2)
P = '/root/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct'
tok = AutoTokenizer.from_pretrained(P)
m = AutoModelForCausalLM.from_pretrained(P, dtype=torch.bfloat16).eval()
W = m.lm_head.weight.detach().float()
rows = [json.loads(l) for l in open('/root/.cache/specscope/runs/e3_real/heldout64.answers.jsonl')][:3]
xs = []
with torch.inference_mode():
    for r in rows:
        msgs = [{"role": "user", "content": r['prompt']}, {"role": "assistant", "content": r['answer']}]
        ids = tok.apply_chat_template(msgs, return_tensors='pt', tokenize=True)
        if hasattr(ids, 'input_ids'):
            ids = ids.input_ids
        xs.append(m(ids[:, :300], output_hidden_states=True).hidden_states[-1][0])
x = torch.cat(xs).float()
exact = x @ W.T
l1 = x.abs().sum(-1, keepdim=True)
for levels, G in ((127, 1536), (7, 1536), (7, 128), (7, 64), (7, 32), (15, 32)):
    Wg = W.view(W.shape[0], -1, G)
    s = Wg.abs().amax(-1, keepdim=True) / levels
    q = (Wg / s).round().clamp(-levels, levels)
    err = (Wg - q * s).abs().amax(-1)  # (V, ngroups)
    approx = x @ (q * s).view_as(W).T
    xg = x.abs().view(x.shape[0], -1, G).sum(-1)  # (n, ngroups)
    e = xg @ err.T * 1.0001
    e = e + 2**-7 * (approx.abs() + e)
    lo, hi = approx - e, approx + e
    L2 = lo.topk(2, -1).values[:, 1:2]
    cand = (hi >= L2).sum(-1).float()
    bits = {127: 8, 7: 4, 15: 5}[levels]
    mb = W.numel() * bits / 8 / 1e6 + W.shape[0] * (W.shape[1] // G) * 4 / 1e6 * (2 if G < 1536 else 1)
    print(
        f"levels {levels} group {G}: MB {mb:.0f}  cands mean {cand.mean():.1f} median {cand.median():.0f} p90 {cand.quantile(0.9):.0f} max {cand.max():.0f}",
        flush=True,
    )
