"""Thirty-third session: the lm_head's screen for a float32 target (the AVX2 kind's dtype), the head alone: the
full head on rowdot's float32 product (as the compiled forward's library path computes it where a screen may
run) against the screen with rowdot_i8's int8 logits (AVX512F) and with core/screen.c's AVX2 code (built
here without AVX512: on Zen 5, so only indicative of the AVX2 kind), on the real target's hidden states at
1-8 rows; the first and second logits checked against the full head's (screen_fp32_33.log)."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from core import rowdot, screen
from core.engine import _margins

torch.set_num_threads(2)
P = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
R = os.path.expanduser("~/.cache/specscope/runs/e3_real/heldout64.answers.jsonl")
tok = AutoTokenizer.from_pretrained(P)
m = AutoModelForCausalLM.from_pretrained(P, dtype=torch.bfloat16).eval()
rows = [json.loads(line) for line in open(R)][:4]
xs = []
with torch.inference_mode():
    for r in rows:
        msgs = [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["answer"]}]
        ids = tok.apply_chat_template(msgs, return_tensors="pt", tokenize=True)
        ids = ids.input_ids if hasattr(ids, "input_ids") else ids
        xs.append(m(ids[:, :300], output_hidden_states=True).hidden_states[-1][0])
x = torch.cat(xs).float()
W = m.lm_head.weight.detach().float().contiguous()
del m
full = torch.cat([rowdot.linear(x[i : i + 4], W) for i in range(0, x.shape[0], 4)])  # rowdot's (past 64 rows: F.linear's)
out = {}
for isa in ("native", "avx2"):
    os.environ["SPECSCOPE_SCREEN_AVX2"] = "1" if isa == "avx2" else "0"
    sc = screen.Screen(W)
    kept, same = [], True
    for i in range(0, x.shape[0], 4):
        s = sc.logits(x[i : i + 4])
        kept += sc.kept
        same &= s.argmax(-1).tolist() == full[i : i + 4].argmax(-1).tolist() and _margins(s) == _margins(full[i : i + 4])
    print(
        f"{isa} ({'own' if sc.own else 'rowdot_i8'}): {x.shape[0]} rows, first and second equal: {same}; kept mean {sum(kept) / len(kept):.1f}, max {max(kept)}",
        flush=True,
    )
    out[isa] = sc
for n in (1, 2, 3, 4, 8):
    xb = x[:n].contiguous()
    fs = {"full (rowdot_f32)": lambda: rowdot.linear(xb, W)}
    for isa, sc in out.items():
        fs[f"screen {isa}"] = lambda sc=sc, isa=isa: (
            os.environ.__setitem__("SPECSCOPE_SCREEN_AVX2", "1" if isa == "avx2" else "0"),
            sc.logits(xb),
        )
    for _ in range(2):
        for f in fs.values():
            f()
    res = {}
    for name, f in fs.items():
        best = 1e9
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(5):
                f()
            best = min(best, (time.perf_counter() - t) / 5)
        res[name] = round(best * 1e3, 2)
    print(n, "rows ms", res, flush=True)
