"""Thirty-third session: the screen's int8 logits by rowdot_i8 (float32) against screen_i8x16 (x rounded to int16,
VPDPWSSD, integer sums; screen_vnni33.patch), and the head's time each way (screen_vnni33.log). Not kept."""

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
        xs.append(m(ids[:, :400], output_hidden_states=True).hidden_states[-1][0])
x = torch.cat(xs)
pk = rowdot.pack(W)
full = rowdot.linear(x, pk, interleaved=True).float()
sc = screen.Screen(W)
print('vnni', sc.vnni, 'levels', sc.levels)
res = {}
for v in (False, True):
    sc.vnni = v
    kept = []
    ok = True
    for i in range(0, x.shape[0], 4):
        s = sc.logits(x[i : i + 4])
        kept += sc.kept
        ok &= s.argmax(-1).tolist() == full[i : i + 4].argmax(-1).tolist() and _margins(s) == _margins(full[i : i + 4])
    print('vnni' if v else 'float', 'equal', ok, f'kept mean {sum(kept) / len(kept):.2f} max {max(kept)}', flush=True)
for n in (1, 2, 3, 4, 6, 8, 12, 16):
    xb = x[:n].contiguous()

    def scr(v):
        def f():
            sc.vnni = v
            return sc.logits(xb)

        return f

    fs = [('full', lambda: rowdot.linear(xb, pk, interleaved=True)), ('screen float', scr(False)), ('screen vnni', scr(True))]
    for _ in range(2):
        for _n, f in fs:
            f()
    out = {}
    for name, f in fs:
        best = 1e9
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(10):
                f()
            best = min(best, (time.perf_counter() - t) / 10)
        out[name] = round(best * 1e3, 2)
    print(n, 'rows ms', out, flush=True)
