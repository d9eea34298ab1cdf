"""Thirty-third session: the lm_head screen (core/screen.py) against the full head on the real target's hidden states: the same
first and second logits, a row alone as in a block, and the head's time each way at 1-8 rows (screen_head33.log)."""

import json
import time
import torch
import sys

sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__file__), '..', '..'))
from transformers import AutoModelForCausalLM, AutoTokenizer
from core import rowdot, screen
from core.engine import _margins

torch.set_num_threads(2)
P = '/root/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct'
tok = AutoTokenizer.from_pretrained(P)
m = AutoModelForCausalLM.from_pretrained(P, dtype=torch.bfloat16).eval()
W = m.lm_head.weight.detach()
rows = [json.loads(l) for l in open('/root/.cache/specscope/runs/e3_real/heldout64.answers.jsonl')][:6]
xs = []
with torch.inference_mode():
    for r in rows:
        msgs = [{"role": "user", "content": r['prompt']}, {"role": "assistant", "content": r['answer']}]
        ids = tok.apply_chat_template(msgs, return_tensors='pt', tokenize=True)
        if hasattr(ids, 'input_ids'):
            ids = ids.input_ids
        out = m(ids[:, :400], output_hidden_states=True)
        xs.append(out.hidden_states[-1][0])
x = torch.cat(xs)
print('rows', x.shape, screen.available(W))
t = time.perf_counter()
sc = screen.Screen(W)
print('screen built %.1f s' % (time.perf_counter() - t))
pk = rowdot.pack(W)
full = rowdot.linear(x, pk, interleaved=True)
ok = 0
kept = []
for i in range(0, x.shape[0], 4):
    xb = x[i : i + 4]
    s = sc.logits(xb)
    f = full[i : i + 4].float()
    kept += sc.kept
    same = (s.argmax(-1) == f.argmax(-1)).all() and _margins(s) == _margins(f)
    # kept tokens bit-equal
    ok += bool(same)
print('groups equal', ok, 'of', -(-x.shape[0] // 4), f"kept mean {sum(kept) / len(kept):.1f} max {max(kept)}")
# row alone vs within 4
s1 = sc.logits(x[5:6])
s4 = sc.logits(x[4:8])
print('row alone == row in block', torch.equal(s1[0], s4[1]))
for n in (1, 2, 3, 4, 8):
    xb = x[:n].contiguous()
    fs = [
        ('full', lambda: rowdot.linear(xb, pk, interleaved=True)),
        ('screen', lambda: sc.logits(xb)),
        ('i8 only', lambda: rowdot.linear_i8(xb.float(), sc.q, sc.s)),
    ]
    res = {}
    for _ in range(3):
        for _name, f in fs:
            f()
    for name, f in fs:
        best = 1e9
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(10):
                f()
            best = min(best, (time.perf_counter() - t) / 10)
        res[name] = round(best * 1e3, 2)
    print(n, 'rows ms', res)
