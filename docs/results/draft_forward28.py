"""Twenty-eighth session: the real 0.5B drafter loaded as the engine loads it (float32, role drafter,
SPECSCOPE_COMPILE=auto), its compiled forward warmed, then its eager and compiled forwards after 96
prompt tokens at 1 / 2 / 4 / 8 rows (median of 15, two rounds) and ``_measure_draft``.

    .venv/bin/python docs/results/draft_forward28.py ~/.cache/specscope/real-pair/qwen2.5-coder-0.5b-instruct
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ["SPECSCOPE_COMPILE"] = "auto"
import torch

from core.adapters.loader import load
from tools.drafter_probe import _median_ms


def main():
    torch.set_num_threads(2)
    lm = load(sys.argv[1], dtype="float32", role="drafter")
    print("kernels", lm.kernels.get("paths"), flush=True)
    t0 = time.perf_counter()
    ok = lm.compiled.warm()
    print("compiled", ok, lm.compiled.failed, lm.compiled.products, round(time.perf_counter() - t0), "s", flush=True)
    runs = {}
    for mode in ("eager", "compiled"):
        lm._trial.on = mode == "compiled"
        runs[mode] = lm.probe(prefix=96)
        lm._trial.on = False
    for rnd in range(2):
        for rows in (1, 2, 4, 8):
            print(rnd, rows, {m: round(_median_ms(lambda m=m: runs[m](rows), 15), 1) for m in ("eager", "compiled")}, flush=True)
    lm._measure_draft()
    print("draft_seconds", lm.draft_seconds)


if __name__ == "__main__":
    main()
