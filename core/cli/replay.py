"""The verbs that score drafters against recorded target runs: ``replay`` (drafters x shapes
ranked on one recording, docs/insight.md) and ``audit`` (plain vs speculative logits)."""

from __future__ import annotations

import json
import sys

from .. import api, audit as A, paths, replay as R
from ..costs import target_curve
from ..drafters import parse_drafter
from ..errors import InputError
from ..images import load_image
from ..sampling import SamplingConfig
from ..trace import Trace


def replay(args) -> int:
    api.threads_from_env()
    tr = None
    if args.trace:
        try:
            with open(args.trace) as f:
                tr = Trace.from_json(f.read())
        except OSError as e:
            raise ValueError(f"cannot read trace {args.trace}: {e.strerror}") from None
    meta = tr.meta if tr else {}
    prompt = args.prompt if args.prompt is not None else meta.get("prompt")
    if prompt is None:
        raise ValueError("the trace does not store its prompt (written before `run` recorded it): pass --prompt")
    img_path = args.image if args.image is not None else meta.get("image")
    image = load_image(img_path) if img_path else None
    target = args.target or meta.get("target") or "default"
    if target == str(paths.DEFAULT_TARGET):
        target = "default"
    dtype = args.dtype or meta.get("dtype") or "auto"
    sm = meta.get("sampling") or {}
    sampling = SamplingConfig(sm.get("temperature", 0.0), sm.get("top_k", 0), sm.get("top_p", 1.0), sm.get("seed", 0))
    shapes = [R.parse_shape(x) for x in args.shapes.split(",") if x.strip()]
    names = [x.strip() for x in args.drafters.split(",") if x.strip()]
    if any(parse_drafter(n) is None for n in names):
        raise InputError("--drafters lists drafters (none / ar: the recording is the plain run)")
    pairs = {n: api.load_pair(target, n, dtype=dtype, device=args.device) for n in names}
    tgt = next(iter(pairs.values())).target if pairs else api.load_target(target, dtype, device=args.device)
    rec = R.record(
        tgt,
        prompt,
        image,
        output=list(tr.output) if tr else None,
        max_new_tokens=args.max_new_tokens,
        stop_reason=tr.stop_reason if tr else None,
    )
    curve = None if args.no_costs else target_curve(tgt)
    rows = R.rank(rec, {n: p.drafter for n, p in pairs.items()}, shapes, curve, sampling)
    if args.check:  # the same shapes decoded for real: plain and speculative, alternating (api.compare)
        for row in rows:
            res = api.compare(
                pairs[row["drafter"]],
                prompt,
                image,
                R.parse_shape(row["shape"]),
                sampling,
                len(rec.output),
                repeats=args.repeats,
                detail=False,
            )
            row["real_tau"] = res.tau
            row["real_speedup"] = round(res.speedup, 3)
    info = {"tokens": len(rec.output), "mismatches": rec.mismatches, "near_ties": rec.near_ties(), "estimate": not sampling.greedy}
    if args.json:
        print(json.dumps({"recording": info, "rows": rows}))
        return 0
    _table(rows, sampling, curve, args.check)
    if info["estimate"]:
        print(
            f"\n[recording: {info['tokens']} sampled tokens (T > 0): tau is exact matching along the recorded "
            "path, tau_estimate the expected acceptance (an estimate); the predicted speedup prices the "
            "recorded-path steps]",
            file=sys.stderr,
        )
    else:
        print(
            f"\n[recording: {info['tokens']} tokens; {len(info['near_ties'])} near-ties (top-2 margin < "
            f"{R.NEAR_TIE}); {len(info['mismatches'])} positions where teacher forcing disagrees with the "
            "run]",
            file=sys.stderr,
        )
    return 0


def _table(rows: list[dict], sampling: SamplingConfig, curve, checked: bool) -> None:
    cols = (
        ["drafter", "shape", "tau"]
        + (["tau_estimate"] if not sampling.greedy else [])
        + ([] if curve is None else ["predicted_tok_s", "predicted_speedup"])
        + (["real_tau", "real_speedup"] if checked else [])
    )
    print("  ".join(f"{c:>18s}" if i > 1 else f"{c:<22s}" for i, c in enumerate(cols)))
    for row in rows:
        print("  ".join(f"{str(row.get(c, '')):>18s}" if i > 1 else f"{str(row[c])[:22]:<22s}" for i, c in enumerate(cols)))


def audit(args) -> int:
    api.threads_from_env()
    if parse_drafter(args.drafter) is None:
        raise InputError("audit needs a --drafter (none / ar drafts nothing)")
    pair = api.load_pair(args.target, args.drafter, dtype=args.dtype, device=args.device)
    if args.prompts:
        img = load_image(args.image) if args.image else None
        inputs = [(p, img) for p in args.prompts.split("|") if p.strip()]
    else:
        inputs = A.default_inputs()
    shapes = [R.parse_shape(x) for x in args.shapes.split(",") if x.strip()]
    rep = A.audit(pair.target, pair.drafter, inputs, shapes, args.max_new_tokens)
    if args.json:
        print(json.dumps(rep))
    else:
        print(A.format_report(rep))
    return 0 if rep["ok"] else 1
