"""Twenty-eighth session: plain 1-row and 4-row forwards of the real target on the eager path (kernels
measured), median of 15 after 96 prompt tokens, and a torch sum's read rate. Run from a checkout with
PYTHONPATH set to it (this session's commit and the previous one, alternated).

    PYTHONPATH=CHECKOUT .venv/bin/python docs/results/plainstep28.py ~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct
"""

import os
import sys
import time

os.environ["SPECSCOPE_COMPILE"] = "off"
import torch

import core
from core.adapters.loader import load
from tools.drafter_probe import _median_ms


def main():
    torch.set_num_threads(2)
    print(core.__file__)
    run = load(sys.argv[1], dtype="bfloat16").probe(prefix=96)
    x = torch.ones(128 << 20)
    for _ in range(3):
        x.sum()
    s = time.perf_counter()
    for _ in range(5):
        x.sum()
    gbs = 5 * x.numel() * 4 / (time.perf_counter() - s) / 1e9
    print(f"1 row {_median_ms(lambda: run(1), 15):.1f} ms, 4 rows {_median_ms(lambda: run(4), 15):.1f} ms, sum {gbs:.1f} GB/s")


if __name__ == "__main__":
    main()
