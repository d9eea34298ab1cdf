"""Twenty-fifth session: the real target's compiled forward with the library's products (inductor,
oneDNN) against rowdot_il's, both compiled in one process, their 1 / 2 / 3 / 4 / 8-row forwards after a
150-token context timed interleaved (fastest of 5 calls, median over ROUNDS rounds; a torch sum each
round), then whether row 0 of a 4-row block equals the same token alone on rowdot's forward.

    .venv/bin/python docs/results/compiled_products25.py 5
"""

import os
import statistics as st
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ["SPECSCOPE_COMPILE"] = "auto"
import torch

from core import adapters, compiled
from tools.bench.bound import bandwidth

T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
CTX = 150
tgt = adapters.load(T, dtype="bfloat16")
print("threads", torch.get_num_threads(), "products measured here:", tgt.compiled.products, flush=True)
decs = {}
for p in ("rowdot", "library"):
    d = compiled.CompiledDecoder(tgt.model)
    d.products = p
    t = time.time()
    print(p, "compiled", d.warm(), d.failed, round(time.time() - t), "s", flush=True)
    decs[p] = d


def step(d, kv, n):
    d.forward(kv, list(range(200, 200 + n)), torch.arange(CTX, CTX + n), None)
    kv.length = CTX


res: dict = {}
with torch.inference_mode():
    kvs = {p: d.empty_kv(CTX) for p, d in decs.items()}
    for p, d in decs.items():  # a context (any tokens: timing only)
        kvs[p].length = 0
        for s in range(0, CTX, 30):
            d.forward(kvs[p], list(range(100, 130)), torch.arange(s, s + 30), None)
        kvs[p].length = CTX
    for _ in range(ROUNDS):
        res.setdefault("bw", []).append(bandwidth() / 1e9)
        for n in (1, 2, 3, 4, 8):
            for p, d in decs.items():
                ts = []
                for _ in range(6):
                    t0 = time.perf_counter()
                    step(d, kvs[p], n)
                    ts.append(time.perf_counter() - t0)
                res.setdefault((p, n), []).append(min(ts[1:]) * 1e3)
print("torch sum GB/s by round", [round(b, 1) for b in res["bw"]])
for n in (1, 2, 3, 4, 8):
    a, b = res[("rowdot", n)], res[("library", n)]
    print(f"{n} rows: rowdot {st.median(a):.1f} ms, library {st.median(b):.1f} ms ({st.median(b) / st.median(a):.2f}x)")
with torch.inference_mode():
    d, kv = decs["rowdot"], kvs["rowdot"]
    four = d.forward(kv, [200, 201, 202, 203], torch.arange(CTX, CTX + 4), None)[0]
    kv.length = CTX
    one = d.forward(kv, [200], torch.arange(CTX, CTX + 1), None)[0]
    print("rowdot: row 0 of 4 rows equals 1 row:", torch.equal(four[0], one[0]))
