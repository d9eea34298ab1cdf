"""How fast does a model drafter's forward run, eager or compiled? (docs/results.md, eighth session)

    python -m tools.drafter_probe DRAFTER_DIR eager        # float32 + core.kernels' measured paths
    python -m tools.drafter_probe DRAFTER_DIR bf16         # core.compiled over a bfloat16 copy
    python -m tools.drafter_probe DRAFTER_DIR lossy        # core.compiled as drafters get it: float32, the
                                                           # products measured fastest, int8 (rowdot_i8) allowed

Prints the median of 20 one-row and four-row forwards after 200 cached tokens (and the compile
time). A measurement, not a code path: the engine chooses a drafter's forward itself, by timing both
(``HFAdapter._settle_draft``; docs/results.md, twenty-eighth session).
"""

from __future__ import annotations

import argparse
import time

import torch

import core.compiled as C
from core.adapters.base import Encoded
from core.adapters.loader import load
from core.errors import InputError, ModelLoadError

PREFIX = 200


def _median_ms(f, n: int = 20) -> float:
    for _ in range(3):
        f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[n // 2] * 1e3


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("drafter")
    ap.add_argument("mode", choices=("eager", "bf16", "lossy"))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        _probe(a.drafter, a.mode)
    except (ModelLoadError, InputError) as e:
        raise SystemExit(f"drafter_probe: {e}") from None


def _probe(drafter: str, mode: str) -> None:
    if mode == "eager":
        lm = load(drafter, dtype="float32", role="drafter", kernels="auto")
        sess, _, _ = lm.prefill(Encoded(torch.randint(100, 5000, (1, PREFIX))))

        def step(n: int) -> None:
            lm.forward(sess, [5] * n)
            lm.keep(sess, PREFIX, [])

        compile_s = 0.0
    else:
        lm = load(drafter, dtype="bfloat16" if mode == "bf16" else "float32", role="drafter", kernels="stock")
        fast = C.CompiledDecoder(lm.model, lossy=mode == "lossy")
        t0 = time.perf_counter()
        if not fast.warm():
            raise SystemExit(f"compile failed: {fast.failed}")
        compile_s = time.perf_counter() - t0
        kv = fast.empty_kv(PREFIX)

        def step(n: int) -> None:
            fast.forward(kv, [5] * n, torch.arange(PREFIX, PREFIX + n), None)
            kv.length = PREFIX

    one, four = _median_ms(lambda: step(1)), _median_ms(lambda: step(4))
    print(
        f"{mode} ({'eager' if mode == 'eager' else fast.products}): 1 row {one:.1f} ms, 4 rows {four:.1f} ms, compile {compile_s:.0f} s ({torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
