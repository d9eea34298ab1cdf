"""Twenty-sixth session: the engine's row probe (core.rows.row_set, measured again) on the real
target's compiled forward: which row counts compute alike, and one forward's seconds at each.

    .venv/bin/python docs/results/row_set26.py
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ["SPECSCOPE_COMPILE"] = "auto"
from core import adapters
from core import rows as R

T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
tgt = adapters.load(T, dtype="bfloat16")
t = time.time()
print("products", tgt.compiled.products, "compiled", tgt.compiled.warm(), round(time.time() - t), "s", flush=True)
tgt.use_compiled = True
t = time.time()
rows = R.row_set(tgt, refresh=True, path="compiled")
print(R.describe(rows), f"({time.time() - t:.0f} s)")
print("groups", rows.groups, "trees", rows.trees)
print("seconds", {k: round(v * 1e3, 1) for k, v in rows.seconds.items()}, "ms")
