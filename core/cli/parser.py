"""The flags of ``python -m core``: one parser, a sub-command per verb (docs: docs/usage.md "CLI")."""

from __future__ import annotations

import argparse

from .shape import add_shape_flags

SHAPES = "chain:4,tree:3x2x1,dynamic:5/4/20"  # replay / audit: the shapes scored by default


def _decode_flags() -> argparse.ArgumentParser:
    """The flags of the verbs that decode (run, compare, visual)."""
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
    add_shape_flags(common)
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
    return common


def parser() -> argparse.ArgumentParser:
    common = _decode_flags()
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
    rp.add_argument("--shapes", default=SHAPES, help="comma-separated: chain:G, tree:AxBxC, dynamic:DEPTH/TOPK/BUDGET")
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
    au.add_argument("--shapes", default=SHAPES)
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
    ex.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16"], help="the weights' dtype in OUT (bfloat16: half the size)"
    )
    ex.add_argument("--json", action="store_true")
    return p
