"""Thirty-third session: the lm_head's screen (core/screen.py) in the compiled step of the real target.

The target's compiled forward (rowdot_il products), its cache filled with a real prompt and the start of
its answer (300 tokens); then blocks of n real tokens, each timed with the full head and with the screen
(``top_only``), alternated, the fastest of 25 a round over 3 rounds. Also: the warm-up's own timing of
the head each way (``head_seconds``), the row counts it screens, how many tokens a row kept, and that the
screened steps' first and second logits equal the full head's.

    python docs/results/screen33.py
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import torch

from core import compiled
from core.engine import _margins
from core.pairs import load_target

torch.set_num_threads(2)
T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
t = load_target(T, "bfloat16")
fast = compiled.CompiledDecoder(t.model)
print("products", fast.products, flush=True)
t0 = time.time()
fast.warm()
print(f"warm {time.time() - t0:.1f} s; head timed at warm-up (s): {json.dumps(fast.head_seconds)}", flush=True)
print("screened row counts", sorted(fast.screen_rows), fast.head_why or "", flush=True)
fast.screen_rows = frozenset(range(1, 9))  # both ways at every row count timed below

prompts = [json.loads(line) for line in open(os.path.join(os.path.dirname(__file__), "e3_heldout_prompts.jsonl"))]
text = prompts[0]["prompt"]
ids = t.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
ids = (ids + ids * 8)[:340]
P = 300
kv = fast.empty_kv(P)
kv.length = 0
for s in range(0, P, 100):
    fast.forward(kv, ids[s : s + 100], torch.arange(s, s + 100), None)
assert kv.length == P

kept, same = [], True


def run(n, top, iters=25):
    global same
    ts = []
    for _i in range(iters):
        t0 = time.perf_counter()
        logits, h, _ = fast.forward(kv, ids[P : P + n], torch.arange(P, P + n), None, top)
        ts.append(time.perf_counter() - t0)
        kv.length = P
        if top and _i == 0:
            kept.extend(fast.screen.kept)
            full = fast._head(h, False).float()
            same &= logits.argmax(-1).tolist() == full.argmax(-1).tolist() and _margins(logits) == _margins(full)
    return min(ts[3:])


best = {}
for _r in range(3):
    for n in (1, 2, 3, 4, 6, 8):
        for top in (False, True):
            best[(n, top)] = min(best.get((n, top), 9), run(n, top))
print("rows  full head ms  screened ms  saved ms", flush=True)
for n in (1, 2, 3, 4, 6, 8):
    a, b = best[(n, False)] * 1e3, best[(n, True)] * 1e3
    print(f"{n:4d}  {a:12.2f}  {b:11.2f}  {a - b:8.2f}", flush=True)
print(f"tokens kept a row: mean {sum(kept) / len(kept):.1f}, max {max(kept)}; first and second equal the full head's: {same}")
