"""Tune the draft size for THIS machine (like EAGLE's automatic ``total_tokens``).

The best node budget / chain length depends on how a target forward's cost grows with the
number of tokens it verifies: nearly flat on a GPU, steeper on a CPU. So it depends on the
machine as much as on the drafter, and this measures it instead of guessing:

    python -m tools.tune --target default --drafter msd            # prints a table, saves the best

1. the target's forward cost for 1..64 tokens (the curve that sets the trade-off);
2. tokens/s of speculative decoding on a few held-out scenes for each candidate shape
   (chain gamma and dynamic-tree budget), the same inputs for all, each sample's plain and
   speculative run back to back (``api.compare``, after ``api.warm``);
3. the fastest chain and dynamic shapes are written to ``~/.cache/specscope/tuning.json``
   (``SPECSCOPE_TUNING`` to move it), keyed by machine, threads, target and drafter. The app and
   ``python -m core run --tuned`` read it; without an entry they use the defaults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from core import api
from core.machine import machine_key, tuning_path, update_tuning
from core.errors import run_command
from core.drafters import DraftSpec
from core.sampling import SamplingConfig
from .scenes.generator import heldout_seeds
from .scenes.tasks import make_sample


def forward_costs(target, image, prompt: str, sizes=(1, 2, 4, 8, 16, 32, 64), reps: int = 15) -> dict:
    """Median wall ms of one target forward of n tokens after the prompt (KV cache warm)."""
    enc = target.encode(prompt, image)
    sess, _, _ = target.prefill(enc)
    base = sess.length
    out = {}
    for n in sizes:
        attn = torch.cat([torch.ones(n, base, dtype=torch.bool), torch.tril(torch.ones(n, n, dtype=torch.bool))], 1)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            target.forward(sess, [5] * n, torch.arange(base, base + n), attn)
            ts.append(time.perf_counter() - t0)
            target.keep(sess, base, [])
        out[n] = 1000 * statistics.median(ts)
    return out


def measure(pair, samples, spec: DraftSpec, max_new_tokens: int) -> tuple[float, float, float, float]:
    """(AR tokens, AR wall s, speculative tokens, speculative wall s) summed over the samples; each
    sample's plain and speculative run back to back (``api.compare``; the pair and shape warmed
    once by ``api.warm``)."""
    ar_tokens = ar_wall = sp_tokens = sp_wall = 0.0
    for smp in samples:
        cmp = api.compare(pair, smp["prompt"], smp["image"], spec, SamplingConfig(), max_new_tokens, warmup=True, repeats=1, detail=False)
        ar_tokens += len(cmp.plain_trace.output)
        ar_wall += cmp.plain_trace.wall_s
        sp_tokens += len(cmp.spec_trace.output)
        sp_wall += cmp.spec_trace.wall_s
    return ar_tokens, ar_wall, sp_tokens, sp_wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.tune", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="default")
    ap.add_argument("--drafter", default="msd")
    ap.add_argument("--gammas", default="2,3,4,5,6,8")
    ap.add_argument("--budgets", default="6,8,12,16,24,32,48")
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=4)
    ap.add_argument("--n", type=int, default=4, help="held-out scenes to time on")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    return run_command(lambda: tune(args))


def tune(args) -> int:
    """Time every shape of ``args`` against plain decoding; print the table; save the best."""
    if args.threads:
        torch.set_num_threads(args.threads)
    gammas = [int(x) for x in args.gammas.split(",") if x]
    budgets = [int(x) for x in args.budgets.split(",") if x]
    pair = api.load_pair(args.target, args.drafter)
    samples = [make_sample(s) for s in heldout_seeds(args.n, start=7000)]
    samples = [s for s in samples if s["image"] is not None] or samples

    costs = forward_costs(pair.target, samples[0]["image"], samples[0]["prompt"])
    print("target forward cost on this machine (ms): " + ", ".join(f"{n} tok {ms:.2f}" for n, ms in costs.items()))

    shapes = [DraftSpec("chain", gamma=g) for g in gammas] + [
        DraftSpec("dynamic", depth=args.depth, top_k=args.top_k, budget=b) for b in budgets
    ]
    ar_t = ar_w = 0.0
    rows = []
    for spec in shapes:  # AR interleaved: drift cancels
        t, w, st, sw = measure(pair, samples, spec, args.max_new_tokens)
        ar_t, ar_w = ar_t + t, ar_w + w
        rows.append((spec, st / sw, (st / sw) / (t / w)))
    ar_tps = ar_t / ar_w
    print(f"\nAR: {ar_tps:.1f} tok/s\n\n| shape | tok/s | speedup vs AR |\n|---|---:|---:|")
    for spec, tps, sp in rows:
        shape = (
            f"chain gamma={spec.gamma}"
            if spec.strategy == "chain"
            else f"dynamic depth={spec.depth} top_k={spec.top_k} budget={spec.budget}"
        )
        print(f"| {shape} | {tps:.1f} | {sp:.2f}x |")
    best = {}
    for strat, fields in (("chain", ("gamma",)), ("dynamic", ("depth", "top_k", "budget"))):
        cand = [r for r in rows if r[0].strategy == strat]
        if cand:
            spec = max(cand, key=lambda r: r[1])[0]
            best[strat] = {f: getattr(spec, f) for f in fields}
    print(f"\nbest: {json.dumps(best)}")
    if not args.no_save:
        key = machine_key(args.target, args.drafter)
        if update_tuning(lambda data: data.__setitem__(key, best | {"forward_ms": costs})):
            print(f"saved to {tuning_path()}")
        else:
            print(f"could not write {tuning_path()}: not saved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
