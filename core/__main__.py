"""Command line: python -m core run|compare|visual|replay|audit|export ...  (see README "CLI", docs/insight.md)."""

from __future__ import annotations

import argparse
import json
import sys


def _parser() -> argparse.ArgumentParser:
    from .drafters import DEFAULT_CHAIN, DEFAULT_DYNAMIC  # the app's untuned shapes too

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", default="default", help="Hub id, local directory, or 'default' (assets/target)")
    common.add_argument(
        "--drafter", default=None, help="ngram | layerskip[:K] | msd | massv | small-vlm | text-lm | Hub id / directory | module:Class"
    )
    common.add_argument(
        "--drafter-mode",
        default="multimodal",
        choices=["multimodal", "text-only"],
        help="for a separate drafter model: does it see the image?",
    )
    common.add_argument(
        "--strategy",
        default=None,
        choices=["ar", "auto", "chain", "tree", "dynamic"],
        help="default with a --drafter: auto (a chain whose length the measured cost model "
        "and the drafter's confidence choose at every step, down to plain steps)",
    )
    common.add_argument(
        "--gamma",
        type=int,
        default=None,
        help=f"chain: tokens drafted per step (default {DEFAULT_CHAIN.gamma}); auto: the cap (default 16)",
    )
    common.add_argument("--branching", default="3,2,2,1", help="static tree: children per node at each depth")
    common.add_argument("--depth", type=int, default=DEFAULT_DYNAMIC.depth, help="dynamic tree: depth")
    common.add_argument("--top-k", type=int, default=DEFAULT_DYNAMIC.top_k, help="dynamic tree: expansions per depth")
    common.add_argument(
        "--budget", type=int, default=DEFAULT_DYNAMIC.budget, help="dynamic tree: node budget (sized for CPUs; see python -m tools.tune)"
    )
    common.add_argument(
        "--min-prob", type=float, default=0.0, help="stop expanding draft nodes whose cumulative draft probability is below this"
    )
    common.add_argument(
        "--tuned", action="store_true", help="use the chain / dynamic shape `python -m tools.tune` measured fastest on this machine"
    )
    common.add_argument("--image", default=None)
    common.add_argument("--prompt", required=True)
    common.add_argument("--max-new-tokens", type=int, default=128)
    common.add_argument("--temperature", type=float, default=0.0)
    common.add_argument("--top-p", type=float, default=1.0)
    common.add_argument("--top-k-sampling", type=int, default=0)
    common.add_argument("--seed", type=int, default=0)
    common.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="auto (default): bfloat16 where the CPU/GPU computes it natively (avx512_bf16 / amx / CUDA bf16), else float32",
    )
    common.add_argument(
        "--device",
        default=None,
        choices=["cpu", "cuda", "auto"],
        help="where the target and drafter run (default: $SPECSCOPE_DEVICE, else cpu); auto = cuda if a CUDA GPU is visible",
    )
    common.add_argument(
        "--trust-remote-code", action="store_true", help="allow model repos' own code (refused unless SPECSCOPE_TRUST_REMOTE_CODE=1)"
    )
    common.add_argument("--trace", default=None, help="write the (speculative) run's trace JSON here")
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p = argparse.ArgumentParser(prog="python -m core", description="SpecScope: speculative decoding for VLMs")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", parents=[common], help="decode once (autoregressive or speculative)")
    sub.add_parser("compare", parents=[common], help="decode autoregressively, then speculatively; same input")
    vp = sub.add_parser(
        "visual",
        parents=[common],
        help="decode once, then classify every output token as image-dependent or not (KL and "
        "argmax change with vs without the image) and split the acceptance by class",
    )
    vp.add_argument(
        "--baseline",
        default="none",
        choices=["none", "grey"],
        help="what replaces the image: none (text-only prompt, default) or a grey image of its size",
    )
    vp.add_argument("--threshold", type=float, default=None, help="KL threshold in nats (default 1.0)")

    rp = sub.add_parser(
        "replay", help="score drafters x draft shapes against ONE recorded target run (no target forward per shape; docs/insight.md)"
    )
    rp.add_argument(
        "--trace",
        default=None,
        help="a trace JSON written by `run --trace` (its output is the recording); without it a plain greedy run is recorded",
    )
    rp.add_argument("--target", default=None, help="default: the trace's target, else 'default'")
    rp.add_argument("--prompt", default=None, help="default: the prompt stored in the trace's meta")
    rp.add_argument("--image", default=None, help="default: the image path stored in the trace's meta")
    rp.add_argument("--drafters", default="ngram", help="comma-separated drafter names (as --drafter)")
    rp.add_argument(
        "--shapes", default="chain:4,tree:3x2x1,dynamic:5/4/20", help="comma-separated: chain:G, tree:AxBxC, dynamic:DEPTH/TOPK/BUDGET"
    )
    rp.add_argument("--max-new-tokens", type=int, default=64, help="length of the recorded run (no --trace)")
    rp.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16"], help="default: the trace's dtype, else auto")
    rp.add_argument("--device", default=None, choices=["cpu", "cuda", "auto"])
    rp.add_argument("--no-costs", action="store_true", help="rank by tau only (skip the measured cost curve)")
    rp.add_argument(
        "--check", action="store_true", help="also decode each drafter x shape for real: its tau and measured speedup (median of --repeats)"
    )
    rp.add_argument("--repeats", type=int, default=3, help="timed rounds per shape with --check (default 3)")
    rp.add_argument("--json", action="store_true")

    au = sub.add_parser("audit", help="integration audit: plain vs speculative logits at every position")
    au.add_argument("--target", default="default")
    au.add_argument("--drafter", required=True)
    au.add_argument(
        "--prompts",
        default=None,
        help="'|'-separated prompts (default: two held-out scenes, or two text prompts when the scenes are unavailable)",
    )
    au.add_argument("--image", default=None, help="image for --prompts")
    au.add_argument("--shapes", default="chain:4,tree:3x2x1,dynamic:5/4/20")
    au.add_argument("--max-new-tokens", type=int, default=32)
    au.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16"])
    au.add_argument("--device", default=None, choices=["cpu", "cuda", "auto"])
    au.add_argument("--json", action="store_true")

    ex = sub.add_parser("export", help="write a draft head in a serving engine's layout (EAGLE-3: speculators / SpecForge; docs/eagle3.md)")
    ex.add_argument("out", help="output directory (new or empty)")
    ex.add_argument("--drafter", required=True, help="an EAGLE-3 head directory (SpecScope, speculators or SpecForge)")
    ex.add_argument("--format", default="speculators", choices=["speculators", "specforge"])
    ex.add_argument("--verifier", default=None, help="the target's name for the serving engine (default: the one the head records)")
    ex.add_argument(
        "--target", default=None, help="the target (for a head that names no aux layers: their default depends on its layer count)"
    )
    ex.add_argument(
        "--speculative-tokens",
        type=int,
        default=None,
        help="draft length written into the speculators proposal method (default: as recorded, else 3)",
    )
    ex.add_argument("--json", action="store_true")
    return p


def main(argv=None) -> int:
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no progress bars on stderr
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    args = _parser().parse_args(argv)
    from .errors import InputError, ModelLoadError

    try:
        return _main(args)
    except (InputError, ModelLoadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _main(args) -> int:
    if args.cmd == "replay":
        return _replay(args)
    if args.cmd == "audit":
        return _audit(args)
    if args.cmd == "export":
        from .export import export

        res = export(args.drafter, args.out, args.format, args.verifier, args.target, args.speculative_tokens)
        print(
            json.dumps(res)
            if args.json
            else f"wrote {res['out']} ({res['format']}; verifier {res['verifier']}, aux layers {res['aux_layer_ids']}, "
            f"draft vocab {res['draft_vocab_size']}, norm_before_residual {res['norm_before_residual']})"
        )
        return 0
    from . import api
    from .drafters import spec_for
    from .images import load_image
    from .kernels import describe
    from .sampling import SamplingConfig

    api.threads_from_env()
    strategy = args.strategy or ("auto" if args.drafter else "ar")
    if strategy != "ar" and not args.drafter:
        raise ValueError(f"--strategy {strategy} needs a --drafter")
    try:
        branching = tuple(int(b) for b in args.branching.split(",") if b.strip())
    except ValueError:
        raise ValueError(f"--branching takes comma-separated integers, got {args.branching!r}") from None
    spec = spec_for(strategy if strategy != "ar" else "chain", args.gamma, branching, args.depth, args.top_k, args.budget, args.min_prob)
    if args.tuned and strategy in ("chain", "dynamic"):
        from .drafters import tuned_spec

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
        return _visual(args, api, pair, image, spec, sampling, drafter is not None)

    if args.cmd == "run":
        trace = api.run(
            pair,
            args.prompt,
            image,
            spec,
            sampling,
            args.max_new_tokens,
            speculative=drafter is not None,
            meta={"prompt": args.prompt, "image": args.image},
        )  # lets `replay --trace` rerun it
        if args.trace:
            _write(args.trace, trace.to_json())
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

    if drafter is None:
        raise ValueError("compare needs a --drafter (and a strategy other than ar)")
    res = api.compare(pair, args.prompt, image, spec, sampling, args.max_new_tokens)
    if args.trace:
        _write(args.trace, res["spec"].to_json())
    if args.json:
        print(
            json.dumps(
                {
                    "ar": api.result_json(res["ar"]),
                    "spec": api.result_json(res["spec"]),
                    "speedup": round(res["speedup"], 4),
                    "identical": res["identical"],
                }
            )
        )
    else:
        a, s = res["ar"].summary(), res["spec"].summary()
        print(res["spec"].text)
        print(f"\nAR:   {a['new_tokens']} tokens in {a['wall_s']:.3f} s ({a['tokens_per_s']:.1f} tok/s)")
        print(
            f"spec: {s['new_tokens']} tokens in {s['wall_s']:.3f} s ({s['tokens_per_s']:.1f} tok/s), "
            f"tau {s['tau']:.2f} tokens/target forward (incl. bonus), "
            f"{s['accepted_per_step']:.2f} accepted drafts/step"
        )
        print(f"speedup {res['speedup']:.2f}x, outputs identical: {res['identical']}")
        k = pair.target.kernels
        print(f"kernels: {describe(k)}; {res['spec'].meta.get('spec')}", file=sys.stderr)
    return 0


def split_line(split: dict) -> str:
    """'image-dependent tokens: 41% of drafts accepted; other tokens: 93%' (drafted positions)."""

    def pct(c):
        r = c["accept_rate"]
        return "n/a (none drafted)" if r is None else f"{100 * r:.0f}%"

    im, ot = split["image_dependent"], split["other"]
    return (
        f"image-dependent tokens: {pct(im)} of drafts accepted; other tokens: {pct(ot)}"
        f"  [drafted positions: {im['tried']} of {im['positions']} image-dependent, "
        f"{ot['tried']} of {ot['positions']} other]"
    )


def _visual(args, api, pair, image, spec, sampling, speculative: bool) -> int:
    """`visual`: one run, then core/visual.py on its output; printed per token and stored in --trace."""
    from . import visual as V

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
        _write(args.trace, trace.to_json())
    if args.json:
        print(json.dumps({**api.result_json(trace), "visual": res, "split": split, "split_line": split_line(split) if split else None}))
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
        print(split_line(split))
    else:
        print("(no drafter: nothing drafted, no acceptance split; pass --drafter)")
    return 0


def _replay(args) -> int:
    from . import api, replay
    from .costs import target_curve
    from .images import load_image
    from .sampling import SamplingConfig
    from .trace import Trace

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
    from . import paths

    if target == str(paths.DEFAULT_TARGET):
        target = "default"
    dtype = args.dtype or meta.get("dtype") or "auto"
    sm = meta.get("sampling") or {}
    sampling = SamplingConfig(sm.get("temperature", 0.0), sm.get("top_k", 0), sm.get("top_p", 1.0), sm.get("seed", 0))
    shapes = [replay.parse_shape(x) for x in args.shapes.split(",") if x.strip()]
    names = [x.strip() for x in args.drafters.split(",") if x.strip()]
    pairs = {n: api.load_pair(target, n, dtype=dtype, device=args.device) for n in names}
    tgt = next(iter(pairs.values())).target if pairs else api.load_target(target, dtype, device=args.device)
    rec = replay.record(
        tgt,
        prompt,
        image,
        output=list(tr.output) if tr else None,
        max_new_tokens=args.max_new_tokens,
        stop_reason=tr.stop_reason if tr else None,
    )
    curve = None if args.no_costs else target_curve(tgt)
    rows = replay.rank(rec, {n: p.drafter for n, p in pairs.items()}, shapes, curve, sampling)
    if args.check:  # the same shapes decoded for real: plain and speculative, alternating (api.compare)
        for row in rows:
            res = api.compare(
                pairs[row["drafter"]],
                prompt,
                image,
                replay.parse_shape(row["shape"]),
                sampling,
                len(rec.output),
                repeats=args.repeats,
                detail=False,
            )
            row["real_tau"] = res["spec"].summary()["tau"]
            row["real_speedup"] = round(res["speedup"], 3)
    info = {"tokens": len(rec.output), "mismatches": rec.mismatches, "near_ties": rec.near_ties(), "estimate": not sampling.greedy}
    if args.json:
        print(json.dumps({"recording": info, "rows": rows}))
        return 0
    cols = (
        ["drafter", "shape", "tau"]
        + (["tau_estimate"] if not sampling.greedy else [])
        + ([] if curve is None else ["predicted_tok_s", "predicted_speedup"])
        + (["real_tau", "real_speedup"] if args.check else [])
    )
    print("  ".join(f"{c:>18s}" if i > 1 else f"{c:<22s}" for i, c in enumerate(cols)))
    for row in rows:
        print("  ".join(f"{str(row.get(c, '')):>18s}" if i > 1 else f"{str(row[c])[:22]:<22s}" for i, c in enumerate(cols)))
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
            f"{replay.NEAR_TIE}); {len(info['mismatches'])} positions where teacher forcing disagrees with the "
            "run]",
            file=sys.stderr,
        )
    return 0


def _audit(args) -> int:
    from . import api, audit, replay
    from .images import load_image

    api.threads_from_env()
    pair = api.load_pair(args.target, args.drafter, dtype=args.dtype, device=args.device)
    if args.prompts:
        img = load_image(args.image) if args.image else None
        inputs = [(p, img) for p in args.prompts.split("|") if p.strip()]
    else:
        inputs = audit.default_inputs()
    shapes = [replay.parse_shape(x) for x in args.shapes.split(",") if x.strip()]
    rep = audit.audit(pair.target, pair.drafter, inputs, shapes, args.max_new_tokens)
    if args.json:
        print(json.dumps(rep))
    else:
        print(audit.format_report(rep))
    return 0 if rep["ok"] else 1


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise ValueError(f"cannot write trace to {path}: {e.strerror}") from None


if __name__ == "__main__":
    sys.exit(main())
