"""Twenty-sixth session: the real target's compiled forward (rowdot products; inductor's
emulate_precision_casts on, core/compiled.py) after a short prompt: at each of 24 greedy steps, does
the token alone (the one-row graph) compute as row 0 of a 2- and a 4-row block (the many-row graph),
logits and residual stream bit for bit?

    .venv/bin/python docs/results/one_row26.py [rowdot|library]
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ["SPECSCOPE_COMPILE"] = "auto"
import torch
from transformers import AutoTokenizer

from core import adapters, compiled

T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
STEPS = 24
tgt = adapters.load(T, dtype="bfloat16")
d = compiled.CompiledDecoder(tgt.model)
d.products = sys.argv[1] if len(sys.argv) > 1 else "rowdot"
t = time.time()
print(d.products, "compiled", d.warm(), d.failed, round(time.time() - t), "s", flush=True)
prompt = 'def fibonacci(n):\n    """Return the n-th Fibonacci number, iteratively."""\n'
ids = AutoTokenizer.from_pretrained(T)(prompt).input_ids
differing = 0
with torch.inference_mode():
    kv = d.empty_kv(len(ids) + 64)
    kv.length = 0
    d.forward(kv, ids, torch.arange(0, len(ids)), None)
    tok = 198  # a newline, then the greedy tokens
    for step in range(STEPS):
        L = kv.length
        one, _, r1 = d.forward(kv, [tok], torch.arange(L, L + 1), None)
        kv.length = L
        same = {}
        for n in (2, 4):
            lg, _, r = d.forward(kv, [tok] + [100 + i for i in range(n - 1)], torch.arange(L, L + n), None)
            kv.length = L
            same[n] = torch.equal(lg[0], one[0]) and torch.equal(r[0], r1[0])
        if not all(same.values()):
            differing += 1
            print("step", step, "differs (rows: same?)", same, flush=True)
        d.forward(kv, [tok], torch.arange(L, L + 1), None)
        tok = int(one[0].argmax())
print(f"steps differing: {differing} of {STEPS}", flush=True)
