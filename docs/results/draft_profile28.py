"""Twenty-eighth session: where the compiled 0.5B drafter's forward spends its time (torch.profiler over
20 one-row and 20 four-row forwards after 96 prompt tokens).

    .venv/bin/python docs/results/draft_profile28.py ~/.cache/specscope/real-pair/qwen2.5-coder-0.5b-instruct
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ["SPECSCOPE_COMPILE"] = "auto"
import torch
from torch.profiler import ProfilerActivity, profile

from core.adapters.loader import load


def main():
    torch.set_num_threads(2)
    lm = load(sys.argv[1], dtype="float32", role="drafter")
    t0 = time.perf_counter()
    lm.compiled.warm()
    print("compile", round(time.perf_counter() - t0), "s", lm.compiled.products, flush=True)
    lm._trial.on = True
    run = lm.probe(prefix=96)
    for rows in (1, 4):
        for _ in range(5):
            run(rows)
        with profile(activities=[ProfilerActivity.CPU]) as p:
            t0 = time.perf_counter()
            for _ in range(20):
                run(rows)
            wall = (time.perf_counter() - t0) / 20 * 1e3
        print(f"--- {rows} rows: {wall:.1f} ms a forward (under the profiler)")
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


if __name__ == "__main__":
    main()
