"""The verbs that decode: ``run`` (once), ``compare`` (plain, then speculative, same input) and
``visual`` (once, then every output token classed as image-dependent or not)."""

from __future__ import annotations

import json
import sys

from .. import api
from ..drafters import parse_drafter, tuned_spec
from ..images import load_image
from ..kernels import describe
from ..machine import competing_load
from ..sampling import SamplingConfig
from .shape import spec_from_flags


def decode(args) -> int:
    """run | compare | visual: the shared set-up (shape, sampling, image, pair), then the verb."""
    api.threads_from_env()
    named = parse_drafter(args.drafter)  # None: no drafter (absent, "none" or "ar")
    strategy = args.strategy or ("auto" if named else "ar")
    if strategy != "ar" and not named:
        raise ValueError(f"--strategy {strategy} needs a --drafter")
    spec = spec_from_flags(args, strategy if strategy != "ar" else "chain")
    if args.tuned and strategy in ("chain", "dynamic"):
        spec = tuned_spec(args.target, args.drafter, strategy)
    sampling = SamplingConfig(args.temperature, args.top_k_sampling, args.top_p, args.seed)
    if args.cmd == "visual" and not args.image:
        raise ValueError("visual needs --image (the dependence is measured against the run without it)")
    image = load_image(args.image) if args.image else None
    drafter = args.drafter if strategy != "ar" else None
    pair = api.load_pair(
        args.target, drafter, dtype=args.dtype, mode=args.drafter_mode, trust_remote_code=args.trust_remote_code, device=args.device
    )
    if args.cmd == "visual":
        return visual(args, pair, image, spec, sampling, drafter is not None)
    if args.cmd == "run":
        return run(args, pair, image, spec, sampling, drafter is not None)
    if drafter is None:
        raise ValueError("compare needs a --drafter (and a strategy other than ar)")
    return compare(args, pair, image, spec, sampling)


def run(args, pair, image, spec, sampling, speculative: bool) -> int:
    trace = api.run(
        pair,
        args.prompt,
        image,
        spec,
        sampling,
        args.max_new_tokens,
        speculative=speculative,
        meta={"prompt": args.prompt, "image": args.image},
    )  # lets `replay --trace` rerun it
    if args.trace:
        write(args.trace, trace.to_json())
    if args.json:
        print(json.dumps(api.result_json(trace)))
    else:
        s = trace.summary()
        print(trace.text)
        print(
            f"\n[{s['new_tokens']} tokens, {s['target_forwards']} target forwards, tau {s['tau']:.2f}, "
            f"{s['tokens_per_s']:.1f} tok/s, {s['wall_s']:.3f} s]",
            file=sys.stderr,
        )
    return 0


def compare(args, pair, image, spec, sampling) -> int:
    """Plain, then speculative decoding of one input (``api.compare``): the speculative trace goes
    to --trace with its comparison (``Trace.comparison``, schema /4), as the app saves it."""
    fast = pair.target.compiled
    if fast is not None and not fast.ready and not fast.failed and not pair.target.use_compiled:
        print("compiling the target's forward (core/compiled.py: minutes the first time, then measured once)...", file=sys.stderr)
    cmp = api.compare(pair, args.prompt, image, spec, sampling, args.max_new_tokens, meta={"prompt": args.prompt, "image": args.image})
    tr = cmp.spec_trace  # the reported round; tr.comparison is cmp
    if args.trace:
        write(args.trace, tr.to_json())
    if args.json:
        print(
            json.dumps(
                {
                    "ar": api.result_json(cmp.plain_trace),
                    "spec": api.result_json(tr),
                    "speedup": cmp.speedup,
                    "identical": cmp.identical,
                    "comparison": cmp.to_json(),
                }
            )
        )
        return 0
    a, s = cmp.plain, cmp.spec
    print(tr.text)
    print(f"\nAR:   {a.new_tokens} tokens in {a.wall_s:.3f} s ({a.tokens_per_s:.1f} tok/s)")
    print(
        f"spec: {s.new_tokens} tokens in {s.wall_s:.3f} s ({s.tokens_per_s:.1f} tok/s), "
        f"tau {s.tau:.2f} tokens per speculative step (incl. bonus), "
        f"{tr.summary()['accepted_per_step']:.2f} accepted drafts/step"
    )
    print(f"speedup {cmp.speedup:.2f}x (spec tok/s / AR tok/s), outputs identical: {cmp.identical}")
    if not cmp.divergence.identical:
        print(f"divergence: {cmp.divergence.text}")
    if cmp.all_above_bound:
        print("every round measured above its bound (tau) even when re-measured: the speedup above is machine noise, not a verdict")
    elif cmp.above_bound:
        print(f"rounds {cmp.flagged} measured above their bound (tau) even when re-measured: machine noise, left out")
    busy = competing_load() if cmp.above_bound else None
    if busy:
        print(
            f"the load average is {busy[0]:.1f} on the {busy[1]} cores this process may use: other processes compete "
            "for them, which slows plain decoding's many small steps more than speculative decoding's few"
        )
    k = pair.target.kernels
    print(f"kernels: {describe(k)}; forward: {tr.meta.get('forward', 'eager')}; {tr.meta.get('spec')}", file=sys.stderr)
    return 0


def visual(args, pair, image, spec, sampling, speculative: bool) -> int:
    """One run, then core/visual.py on its output; printed per token and stored in --trace."""
    from .. import visual as V

    trace = api.run(
        pair,
        args.prompt,
        image,
        spec,
        sampling,
        args.max_new_tokens,
        speculative=speculative,
        meta={"prompt": args.prompt, "image": args.image},
    )
    res = api.visual_dependence(pair, trace, args.prompt, image, baseline=args.baseline, threshold=args.threshold)
    split = V.split_acceptance(trace) if speculative else None
    if args.trace:
        write(args.trace, trace.to_json())
    if args.json:
        print(
            json.dumps(
                {
                    **api.result_json(trace),
                    "visual": res,
                    "split": split,
                    "split_line": api.split_line(split, counts=True) if split else None,
                }
            )
        )
        return 0
    origins = [o for _, o, _ in trace.token_origins()]
    print(trace.text)
    print(f"\n{'#':>4s}  {'token':<16s}  {'KL (nats)':>9s}  {'changed':>7s}  {'origin':<10s}  class")
    for r in res["tokens"]:
        piece = pair.target.decode_piece(r["token"]).replace("\n", "\\n")
        origin = origins[r["index"]] if r["index"] < len(origins) else ""
        print(
            f"{r['index']:>4d}  {piece[:16]!r:<16s}  {r['kl']:>9.4f}  {'yes' if r['changed'] else 'no':>7s}  "
            f"{origin:<10s}  {'image-dependent' if r['image_dependent'] else 'other'}"
        )
    print(
        f"\n{res['n_dependent']} of {len(res['tokens'])} tokens image-dependent (changed argmax or KL > "
        f"{res['threshold_nats']:g} nat, baseline {res['baseline']}; {res['cost_s']:.3f} s)"
    )
    if split:
        print(api.split_line(split, counts=True))
    else:
        print("(no drafter: nothing drafted, no acceptance split; pass --drafter)")
    return 0


def write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise ValueError(f"cannot write trace to {path}: {e.strerror}") from None
