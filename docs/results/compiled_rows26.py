"""Twenty-sixth session: the real target's compiled forward (the products this machine measures
fastest, emulate_precision_casts on) timed at 1, 2 and 4 rows after a 150-token context, interleaved
(fastest of 5 calls, median over ROUNDS rounds, a torch sum each round).

    .venv/bin/python docs/results/compiled_rows26.py 5
"""

import os
import statistics as st
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ["SPECSCOPE_COMPILE"] = "auto"
import torch

from core import adapters
from tools.bench.bound import bandwidth

T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
CTX = 150
ROWS = (1, 2, 4)
tgt = adapters.load(T, dtype="bfloat16")
d = tgt.compiled
print("products", d.products, flush=True)
t = time.time()
print("compiled", d.warm(), d.failed, round(time.time() - t), "s", flush=True)
res: dict = {}
with torch.inference_mode():
    kv = d.empty_kv(CTX)
    kv.length = 0
    for s in range(0, CTX, 30):  # a context (any tokens: timing only)
        d.forward(kv, list(range(100, 130)), torch.arange(s, s + 30), None)
    kv.length = CTX
    for _ in range(ROUNDS):
        res.setdefault("bw", []).append(bandwidth() / 1e9)
        for n in ROWS:
            ts = []
            for _ in range(6):
                t0 = time.perf_counter()
                d.forward(kv, list(range(200, 200 + n)), torch.arange(CTX, CTX + n), None)
                kv.length = CTX
                ts.append(time.perf_counter() - t0)
            res.setdefault(n, []).append(min(ts[1:]) * 1e3)
print("torch sum GB/s by round", [round(b, 1) for b in res["bw"]])
for n in ROWS:
    print(f"{n} rows: {st.median(res[n]):.1f} ms (rounds {[round(x, 1) for x in res[n]]})")
print(f"bound at the median sum rate: {3.087e9 / (st.median(res['bw']) * 1e9) * 1e3:.1f} ms", flush=True)
