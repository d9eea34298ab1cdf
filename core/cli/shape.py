"""The draft-shape flags, written once for every command line that decodes (``python -m core``,
``python -m tools.bench``): their defaults are ``DraftSpec``'s, the one default shape."""

from __future__ import annotations

import argparse
import re

from ..drafters import DraftSpec, spec_for
from ..drafters.base import AUTO_CAP
from ..errors import InputError


def add_shape_flags(p: argparse.ArgumentParser) -> None:
    """--gamma, --branching, --depth, --top-k, --budget, --min-prob (the strategy flag is the
    caller's: one strategy for a run, a list for a benchmark)."""
    d = DraftSpec()
    p.add_argument(
        "--gamma",
        type=int,
        default=None,
        help=f"chain: tokens drafted per step (default {d.gamma}); auto: the cap (default {AUTO_CAP})",
    )
    p.add_argument("--branching", default=",".join(map(str, d.branching)), help="static tree: children per node at each depth")
    p.add_argument("--depth", type=int, default=d.depth, help="dynamic tree: depth")
    p.add_argument("--top-k", type=int, default=d.top_k, help="dynamic tree: expansions per depth")
    p.add_argument("--budget", type=int, default=d.budget, help="dynamic tree: node budget (sized for CPUs; see python -m tools.tune)")
    p.add_argument(
        "--min-prob",
        type=float,
        default=d.min_prob,
        help="prune: don't expand draft nodes whose cumulative draft probability is below this",
    )


# separators between the children counts: commas, spaces, semicolons, or x between two numbers ("3x2x2")
_SEP = re.compile(r"[,\s;]+|(?<=\d)[x×](?=\d)")


def parse_branching(text, name: str = "--branching") -> tuple[int, ...]:
    """'3,2,2,1' (or '3 2 2 1', '3x2x2x1', a list) -> (3, 2, 2, 1): children per node at each depth
    of a static tree, each in [1, 16]; anything else is the user's mistake (``InputError`` naming
    the field as the user knows it: ``name``, the CLI's flag or the app's "branching")."""
    if isinstance(text, (list, tuple)):
        parts = [str(x) for x in text]
    else:
        parts = [p for p in _SEP.split(str(text or "").strip()) if p]
    if not parts:
        raise InputError(f"{name}: give children per depth, e.g. 3,2,2,1")
    out = []
    for p in parts:
        try:
            b = int(p)
        except ValueError:
            raise InputError(f"{name} takes whole numbers separated by commas (e.g. 3,2,2,1), got {text!r}") from None
        if not 1 <= b <= 16:
            raise InputError(f"{name} values must be between 1 and 16, got {b}")
        out.append(b)
    return tuple(out)


def spec_from_flags(args: argparse.Namespace, strategy: str) -> DraftSpec:
    """The DraftSpec the shape flags mean for ``strategy`` (auto | chain | tree | dynamic);
    out-of-range values raise ``ValueError`` with DraftSpec's message."""
    branching = parse_branching(args.branching)
    return spec_for(strategy, args.gamma, branching, args.depth, args.top_k, args.budget, args.min_prob)
