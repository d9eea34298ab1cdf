"""The run's headline numbers as Markdown, with its comparison to plain decoding when it has one."""

from __future__ import annotations

from core.api import Comparison

from .base import as_trace
from .verdict import identity_badge, speedup_text


def summary_markdown(trace, comparison: Comparison | None = None) -> str:
    """Markdown of the headline numbers; with a comparison (``trace.comparison`` unless given):
    plain decoding's numbers, the measured speedup (median and range of the timed rounds) and the
    identity badge."""
    tr = as_trace(trace)
    sm = tr.summary()
    lines = [
        "| metric | value |",
        "|---|---|",
        f"| **τ: tokens per speculative step (incl. bonus, excl. prefill)** | **{sm['tau']:.2f}** |",
        f"| accepted draft tokens per step (excl. bonus) | {sm['accepted_per_step']:.2f} |",
        f"| drafted tokens per step | {sm['drafted_per_step']:.1f} |",
        f"| new tokens | {sm['new_tokens']} |",
        f"| target forwards (incl. prefill) | {sm['target_forwards']} |",
        f"| tokens / s | {sm['tokens_per_s']:.1f} |",
        f"| wall time | {sm['wall_s']:.2f} s |",
    ]
    rounded = (tr.meta or {}).get("drafter_rounding")
    if rounded:  # faster here, and its acceptance may be lower than the drafter's own
        lines.append(
            f"| drafter's weights | {' and '.join(rounded)} copies, faster on this machine (its own: `SPECSCOPE_DRAFT_WEIGHTS=own`) |"
        )
    c = comparison if comparison is not None else tr.comparison
    if c is None:
        return "\n".join(lines)
    head = "| **measured speedup (spec tok/s ÷ AR tok/s)** |"
    if not c.speedup:
        speed = "| measured speedup | n/a |"
    elif c.speedup >= 1:
        speed = f"{head} **{speedup_text(c.speedup, c.speedups)}** |"
    else:
        speed = f"{head} **{speedup_text(c.speedup, c.speedups)}: slower than plain decoding** |"
    lines += [
        f"| autoregressive tokens / s | {c.plain.tokens_per_s:.1f} |",
        f"| autoregressive wall time | {c.plain.wall_s:.2f} s |",
        speed,
    ]
    return "\n".join(lines) + "\n\n" + identity_badge(c, len(tr.output), (tr.meta or {}).get("temperature"))
