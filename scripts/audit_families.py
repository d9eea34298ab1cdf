"""Integration audit (core/audit.py) on every model family: plain vs speculative logits at every
verify row, chain / static tree / dynamic tree, one table row per family.

    PYTHONPATH=. python scripts/audit_families.py [--families llava,qwen2_vl] [--drafter model|ngram|layerskip:1]
        [--max-new-tokens 16] [--no-default] [--default-tokens 24] [--json]

Targets: the tiny random models of every family (2 layers); drafter: a 1-layer model of the same
family with another seed (default), or a registry name (ngram, layerskip:K). Vision families run on
two small random images, text families on two text prompts. Then the default pair with the MSD head
on two held-out scenes (skipped with --no-default or when assets/ lacks it). float32 throughout.
Exit status 1 when any row is flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from core import api, audit, paths, replay
from tools.tiny import FAMILIES, VISION_FAMILIES, tiny_image, tiny_model_dir

SHAPES = "chain:4,tree:3x2x1,dynamic:5/4/20"
PROMPTS = ("Describe the picture.", "What color is the car?")
TEXT_PROMPTS = ("hello world hello world hello", "the quick brown fox jumps over the lazy dog")


def inputs_for(family: str) -> list[tuple[str, object]]:
    if family in VISION_FAMILIES:
        return [(PROMPTS[0], tiny_image(seed=1)), (PROMPTS[1], tiny_image(40, 48, seed=2))]
    return [(p, None) for p in TEXT_PROMPTS]


def summarize(label: str, drafter: str, rep: dict, seconds: float) -> dict:
    rows = rep["rows"]
    divs = [r["first_divergence"] for r in rows if r["first_divergence"] is not None]
    return {
        "family": label,
        "drafter": drafter,
        "dtype": rep["dtype"],
        "runs": len(rows),
        "rows_compared": sum(r["rows_compared"] for r in rows),
        "multi_token_rows": sum(r["multi_token_rows"] for r in rows),
        "max_abs_diff": rep["max_abs_diff"],
        "rel_diff": rep["rel_diff"],
        "argmax_flips": sum(r["argmax_flips"] for r in rows),
        "first_divergence": min(divs) if divs else None,
        "verdict": "ok" if rep["ok"] else "FLAGGED",
        "seconds": round(seconds, 1),
    }


def audit_pair(label, target, drafter, inputs, shapes, max_new_tokens) -> dict:
    t0 = time.perf_counter()
    pair = api.load_pair(target, drafter, dtype="float32")
    rep = audit.audit(pair.target, pair.drafter, inputs, shapes, max_new_tokens)
    name = drafter if not drafter.startswith("/") else "1-layer " + label
    return summarize(label, name, rep, time.perf_counter() - t0)


def table(rows: list[dict]) -> str:
    cols = [
        "family",
        "drafter",
        "runs",
        "rows compared (multi-token)",
        "max abs diff",
        "rel diff",
        "argmax flips",
        "first divergence",
        "verdict",
    ]
    out = ["| " + " | ".join(cols) + " |", "|---|---|" + "---:|" * (len(cols) - 3) + "---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['family']} | {r['drafter']} | - | - | - | - | - | - | error: {r['error']} |")
            continue
        div = "none (identical)" if r["first_divergence"] is None else f"token {r['first_divergence']}"
        out.append(
            f"| {r['family']} | {r['drafter']} | {r['runs']} | {r['rows_compared']} ({r['multi_token_rows']}) | "
            f"{r['max_abs_diff']:.3g} | {r['rel_diff']:.3g} | {r['argmax_flips']} | {div} | {r['verdict']} |"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--drafter", default="model", help="model (a 1-layer tiny model, seed 1) | ngram | layerskip:K")
    ap.add_argument("--shapes", default=SHAPES)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--no-default", action="store_true", help="skip the default pair with the MSD head")
    ap.add_argument("--default-tokens", type=int, default=24, help="new tokens per input on the default pair")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    api.threads_from_env()
    shapes = [replay.parse_shape(x) for x in args.shapes.split(",") if x.strip()]
    rows = []
    for fam in [f.strip() for f in args.families.split(",") if f.strip()]:
        drafter = tiny_model_dir(fam, num_layers=1, seed=1) if args.drafter == "model" else args.drafter
        try:
            rows.append(audit_pair(fam, tiny_model_dir(fam), drafter, inputs_for(fam), shapes, args.max_new_tokens))
        except Exception as e:  # one family failing must not hide the others
            rows.append({"family": fam, "drafter": args.drafter, "error": f"{type(e).__name__}: {e}"[:160]})
        print(f"done {fam}", file=sys.stderr, flush=True)
    if not args.no_default:
        if paths.SHIPPED_DRAFTERS.get("msd") is not None and paths.SHIPPED_DRAFTERS["msd"].exists() and paths.DEFAULT_TARGET.exists():
            try:
                rows.append(audit_pair("default pair", "default", "msd", audit.default_inputs(2), shapes, args.default_tokens))
            except Exception as e:
                rows.append({"family": "default pair", "drafter": "msd", "error": f"{type(e).__name__}: {e}"[:160]})
        else:
            print("default pair or MSD head not in assets/: skipped", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(table(rows))
        print(
            f"\nshapes {args.shapes}; float32; tiny families: {args.max_new_tokens} new tokens x 2 inputs; "
            f"default pair: {args.default_tokens} new tokens x 2 held-out scenes; verdict ok = outputs identical "
            f"and rel diff <= {audit.TOLERANCE['float32']:g}"
        )
    return 0 if all(r.get("verdict") == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
