"""Thirtieth session (Zen 5 EPYC): the real target's step products as the compiled forward calls
them (``compiled._time_products``), on the library's path (oneDNN, packed) and on rowdot_il's, at
each row count alone. SPECSCOPE_ROWDOT_LAYOUT=24 (8 weight rows a block, 2-3 rows padded to 4: the
kernel before this session) or =4 (4 a block, unpadded) forces rowdot_il's layout.

    .venv/bin/python docs/results/thirtieth_products.py
"""

import os
import sys

sys.path.insert(0, ".")  # run from the checkout root
from core.pairs import load_target
from core import compiled

T = os.path.expanduser("~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct")
t = load_target(T, "bfloat16")
calls = compiled._step_calls(t.model)
for _ in range(2):
    for n in (1, 4, 5, 6, 8):
        compiled.PRODUCT_ROWS = (n,)
        print(n, compiled._time_products(calls, ("rowdot", "library"), rounds=4), flush=True)
