"""Is speculative output plain output, bit for bit, on this machine? One command per pair and dtype.

    python scripts/exact_check.py --target default --drafter msd --dtype bfloat16
    python scripts/exact_check.py --target ~/.cache/specscope/real-pair/qwen2.5-coder-1.5b-instruct \
        --drafter ~/.cache/specscope/real-pair/qwen2.5-coder-0.5b-instruct --dtype bfloat16 \
        --prompts docs/results/real_prompts.jsonl --max-new-tokens 64

Prints the machine, the row-invariant group measured for the target (core/rows.py), then for each
prompt and strategy whether the speculative output equals the exact plain output, with the
divergence classified (core/divergence.py) where it does not, and a JSON summary line last.
``--unpadded`` decodes without the row-invariant forwards (what the engine did before), to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from core import api, rows as R
from core.divergence import explain_traces
from core.drafters import spec_for
from core.machine import cpu_name
from core.sampling import SamplingConfig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="default")
    ap.add_argument("--drafter", default="msd")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--device", default=None)
    ap.add_argument("--prompts", default=None, help="JSONL with a 'prompt' per line (default: the shipped examples)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--strategies", default="auto,chain,tree,dynamic")
    ap.add_argument("--unpadded", action="store_true", help="no row-invariant forwards (the engine before)")
    ap.add_argument("--temperature", type=float, default=0.0, help="> 0: sampled, the same seed for plain and speculative")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rule", default="coupled", help="T > 0: coupled (same tokens as plain) or rejection (same distribution)")
    args = ap.parse_args(argv)
    pair = api.load_pair(args.target, args.drafter, dtype=args.dtype, device=args.device)
    items = _prompts(args.prompts)
    if args.unpadded:
        R.row_set = lambda adapter, refresh=False: R.STOCK  # what the engine did before
        import core.adapters.base as A
        import core.engine as E

        A.row_set = E.row_set = api.row_set = R.row_set
    path = pair.target.settle_path(wait=True)  # the forward users get (compiled where eligible, exact, faster)
    rows = R.row_set(pair.target)
    print(
        f"# {cpu_name()} | {pair.target.dtype} | {pair.target.device} | forward {path} | {R.describe(rows)}"
        f" | attention {rows.attention or 'as loaded'} | measured in {rows.measured_s:.1f} s",
        flush=True,
    )
    sampling = SamplingConfig(temperature=args.temperature, seed=args.seed, rule=args.rule)
    counts = {s: [0, 0] for s in args.strategies.split(",")}
    kinds: dict[str, int] = {}
    t0 = time.time()
    for prompt, image in items:
        ref = api.run(pair, prompt, image, sampling=sampling, max_new_tokens=args.max_new_tokens, speculative=False)
        for strategy in counts:
            tr = api.run(pair, prompt, image, spec_for(strategy), sampling, max_new_tokens=args.max_new_tokens)
            d = explain_traces(ref, tr)
            counts[strategy][0] += d.identical
            counts[strategy][1] += 1
            kinds[d.kind] = kinds.get(d.kind, 0) + 1
            print(f"{strategy:8s} {d.text:70s} | {prompt[:50]!r}", flush=True)
    summary = {
        "cpu": cpu_name(),
        "dtype": str(pair.target.dtype).replace("torch.", ""),
        "forward": path,
        "rows": rows.to_json(),
        "padded": not args.unpadded,
        "sampling": {"temperature": args.temperature, "seed": args.seed, "rule": args.rule},
        "identical": {s: f"{a}/{n}" for s, (a, n) in counts.items()},
        "kinds": kinds,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(summary))
    return 0


def _prompts(path):
    from PIL import Image

    if path:
        with open(path) as f:
            return [(json.loads(line)["prompt"], None) for line in f if line.strip()]
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "examples")
    with open(os.path.join(root, "examples.json")) as f:
        ex = json.load(f)["examples"]
    return [(e["prompt"], Image.open(os.path.join(root, e["file"])).convert("RGB")) for e in ex]


if __name__ == "__main__":
    sys.exit(main())
