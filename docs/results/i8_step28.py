"""Twenty-eighth session: the real 0.5B drafter's step products (as the compiled forward calls them:
``compiled._step_calls``) on rowdot_i8 built with I8 outputs a block (argv[2]: comma-separated values),
through ctypes, at 1 / 2 / 4 / 8 rows, three interleaved rounds.

    .venv/bin/python docs/results/i8_step28.py ~/.cache/specscope/real-pair/qwen2.5-coder-0.5b-instruct 8,4
"""

import ctypes
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import torch
from transformers import AutoModelForCausalLM

import core.compiled as C


def build(v, tmp):
    out = os.path.join(tmp, f"rd_{v}.so")
    src = os.path.join(os.path.dirname(__file__), "..", "..", "core", "rowdot.c")
    subprocess.run(["cc", "-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", f"-DI8={v}", src, "-o", out], check=True)
    lib = ctypes.CDLL(out)
    lib.rowdot_i8.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_long] * 3 + [ctypes.c_int]
    lib.rowdot_i8.restype = None
    lib.rowdot_i8_pack.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_long] * 2
    return lib


def main():
    torch.set_num_threads(2)
    m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
    calls = C._step_calls(m)
    libs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in sys.argv[2].split(","):
            lib = build(v, tmp)
            packs = []
            for c, w in calls:
                W = torch.cat([lin.weight for lin in c]).detach()
                s = (W.abs().amax(1) / 127).clamp(min=1e-12)
                q = (W / s[:, None]).round().to(torch.int8).contiguous()
                o = torch.empty_like(q)
                lib.rowdot_i8_pack(q.data_ptr(), o.data_ptr(), W.shape[1], W.shape[0])
                packs.append((o, s.contiguous(), W.shape, w))
            libs[v] = (lib, packs)

        def run(lib, packs, rows):
            tot = 0.0
            for q, s, (O, K), w in packs:
                x, y = torch.randn(rows, K), torch.empty(rows, O)
                t0 = time.perf_counter()
                lib.rowdot_i8(x.data_ptr(), q.data_ptr(), s.data_ptr(), None, y.data_ptr(), rows, K, O, 2)
                tot += (time.perf_counter() - t0) * w
            return tot * 1e3

        for rnd in range(3):
            for rows in (1, 2, 4, 8):
                print(rnd, rows, {v: round(run(*libs[v], rows), 1) for v in libs}, flush=True)


if __name__ == "__main__":
    main()
