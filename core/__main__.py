"""Command line: python -m core run|compare ...  (see README "CLI")."""
from __future__ import annotations

import argparse
import json
import sys


def _parser() -> argparse.ArgumentParser:
    from .tune import DEFAULT_CHAIN, DEFAULT_DYNAMIC   # the app's untuned shapes too

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", default="default", help="Hub id, local directory, or 'default' (assets/target)")
    common.add_argument("--drafter", default=None,
                        help="ngram | layerskip[:K] | msd | massv | small-vlm | text-lm | Hub id / directory | module:Class")
    common.add_argument("--drafter-mode", default="multimodal", choices=["multimodal", "text-only"],
                        help="for a separate drafter model: does it see the image?")
    common.add_argument("--strategy", default=None, choices=["ar", "auto", "chain", "tree", "dynamic"],
                        help="default with a --drafter: auto (a chain whose length the measured cost model "
                             "and the drafter's confidence choose at every step, down to plain steps)")
    common.add_argument("--gamma", type=int, default=None,
                        help=f"chain: tokens drafted per step (default {DEFAULT_CHAIN.gamma}); auto: the cap (default 16)")
    common.add_argument("--branching", default="3,2,2,1", help="static tree: children per node at each depth")
    common.add_argument("--depth", type=int, default=DEFAULT_DYNAMIC.depth, help="dynamic tree: depth")
    common.add_argument("--top-k", type=int, default=DEFAULT_DYNAMIC.top_k, help="dynamic tree: expansions per depth")
    common.add_argument("--budget", type=int, default=DEFAULT_DYNAMIC.budget, help="dynamic tree: node budget (sized for CPUs; see python -m core.tune)")
    common.add_argument("--min-prob", type=float, default=0.0,
                        help="stop expanding draft nodes whose cumulative draft probability is below this")
    common.add_argument("--tuned", action="store_true",
                        help="use the chain / dynamic shape `python -m core.tune` measured fastest on this machine")
    common.add_argument("--image", default=None)
    common.add_argument("--prompt", required=True)
    common.add_argument("--max-new-tokens", type=int, default=128)
    common.add_argument("--temperature", type=float, default=0.0)
    common.add_argument("--top-p", type=float, default=1.0)
    common.add_argument("--top-k-sampling", type=int, default=0)
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="auto (default): bfloat16 where the CPU/GPU computes it natively "
                             "(avx512_bf16 / amx / CUDA bf16), else float32")
    common.add_argument("--device", default=None, choices=["cpu", "cuda", "auto"],
                        help="where the target and drafter run (default: $SPECSCOPE_DEVICE, else cpu); "
                             "auto = cuda if a CUDA GPU is visible")
    common.add_argument("--trust-remote-code", action="store_true",
                        help="allow model repos' own code (refused unless SPECSCOPE_TRUST_REMOTE_CODE=1)")
    common.add_argument("--trace", default=None, help="write the (speculative) run's trace JSON here")
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p = argparse.ArgumentParser(prog="python -m core", description="SpecScope: speculative decoding for VLMs")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", parents=[common], help="decode once (autoregressive or speculative)")
    sub.add_parser("compare", parents=[common], help="decode autoregressively, then speculatively; same input")
    return p


def main(argv=None) -> int:
    import os
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")      # no progress bars on stderr
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    args = _parser().parse_args(argv)
    from .adapters import InputError, ModelLoadError
    try:
        return _main(args)
    except (InputError, ModelLoadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _main(args) -> int:
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
    spec = spec_for(strategy if strategy != "ar" else "chain", args.gamma, branching, args.depth, args.top_k,
                    args.budget, args.min_prob)
    if args.tuned and strategy in ("chain", "dynamic"):
        from .tune import tuned_spec
        spec = tuned_spec(args.target, args.drafter, strategy)
    sampling = SamplingConfig(args.temperature, args.top_k_sampling, args.top_p, args.seed)
    image = load_image(args.image) if args.image else None
    drafter = args.drafter if strategy != "ar" else None
    pair = api.load_pair(args.target, drafter, dtype=args.dtype, mode=args.drafter_mode,
                         trust_remote_code=args.trust_remote_code, device=args.device)

    if args.cmd == "run":
        trace = api.run(pair, args.prompt, image, spec, sampling, args.max_new_tokens,
                        speculative=drafter is not None)
        if args.trace:
            _write(args.trace, trace.to_json())
        if args.json:
            print(json.dumps(api.result_json(trace)))
        else:
            s = trace.summary()
            print(trace.text)
            print(f"\n[{s['new_tokens']} tokens, {s['target_forwards']} target forwards, tau {s['tau']:.2f}, "
                  f"{s['tokens_per_s']:.1f} tok/s, {s['wall_s']:.3f} s]", file=sys.stderr)
        return 0

    if drafter is None:
        raise ValueError("compare needs a --drafter (and a strategy other than ar)")
    res = api.compare(pair, args.prompt, image, spec, sampling, args.max_new_tokens)
    if args.trace:
        _write(args.trace, res["spec"].to_json())
    if args.json:
        print(json.dumps({"ar": api.result_json(res["ar"]), "spec": api.result_json(res["spec"]),
                          "speedup": round(res["speedup"], 4), "identical": res["identical"]}))
    else:
        a, s = res["ar"].summary(), res["spec"].summary()
        print(res["spec"].text)
        print(f"\nAR:   {a['new_tokens']} tokens in {a['wall_s']:.3f} s ({a['tokens_per_s']:.1f} tok/s)")
        print(f"spec: {s['new_tokens']} tokens in {s['wall_s']:.3f} s ({s['tokens_per_s']:.1f} tok/s), "
              f"tau {s['tau']:.2f} tokens/target forward (incl. bonus), "
              f"{s['accepted_per_step']:.2f} accepted drafts/step")
        print(f"speedup {res['speedup']:.2f}x, outputs identical: {res['identical']}")
        k = pair.target.kernels
        print(f"kernels: {describe(k)}; {res['spec'].meta.get('spec')}", file=sys.stderr)
    return 0


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise ValueError(f"cannot write trace to {path}: {e.strerror}") from None


if __name__ == "__main__":
    sys.exit(main())
