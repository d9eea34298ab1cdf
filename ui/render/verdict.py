"""The words and colours of a comparison's verdict (``core.api.Comparison``): its speedup, whether
the output is identical to plain decoding's and why not, a round above its bound. Read from the
comparison as measured; nothing here recomputes a speedup or compares outputs."""

from __future__ import annotations

import html
import math

from core.api import Comparison

from .base import AMBER, GREEN, RED


def ratio(x: float) -> str:
    """A speedup with three significant digits: "1.92", "11.2", "112" (a noisy run's range can reach
    past 10x; the table's range column is sized for eleven characters, "(0.73–11.2)")."""
    return f"{x:.2f}" if abs(x) < 9.995 else f"{x:.1f}" if abs(x) < 99.95 else f"{x:.0f}"


def speedup_text(speedup: float, rounds: list[float] | None = None) -> str:
    """ "1.92× (1.70–2.20 over 3 runs)"; one run: "1.92× (1 run)"."""
    rounds = [r for r in (rounds or []) if isinstance(r, (int, float)) and math.isfinite(r)]
    if len(rounds) > 1:
        return f"{ratio(speedup)}× ({ratio(min(rounds))}–{ratio(max(rounds))} over {len(rounds)} runs)"
    return f"{ratio(speedup)}× (1 run)" if rounds else f"{ratio(speedup)}×"


def speed_cell(c: Comparison) -> str:
    """ "1.93× (1.76–2.25)": the median of the timed runs and their range (a table cell)."""
    r = c.speedups
    return f"{ratio(c.speedup)}× ({ratio(min(r))}–{ratio(max(r))})" if len(r) > 1 else f"{ratio(c.speedup)}×"


def speed_message(c: Comparison) -> tuple[str, str]:
    """(HTML, status kind) for the measured speedup: a slowdown is a warning, not a success."""
    txt = speedup_text(c.speedup, c.speedups)
    if c.speedup >= 1.0:
        return f"<b>{txt} speedup over plain decoding</b>", "ok"
    return (f"<b>slower than plain decoding: {txt}</b> (here the drafter costs more time than its accepted tokens save)", "warn")


def differs_note(temperature: float, divergence=None) -> str:
    """Why a speculative output differs from plain decoding's (shown next to "differs"): at T > 0
    only the distributions match; at T = 0 the classified divergence (core/divergence.py)."""
    if temperature > 0:
        return "sampling: only the distributions match, so the texts may differ"
    if divergence is None or divergence.identical:
        return ""
    if divergence.kind == "near-tie":
        return divergence.text
    return divergence.text + "; please report it"


def identity_kind(temperature: float, divergence) -> str:
    """The status colour of an identity verdict: ok (identical), warn (amber: a rounding near-tie,
    or sampling), err (red: a real disagreement at T = 0)."""
    if divergence is None or divergence.identical:
        return "ok"
    return "warn" if temperature > 0 or divergence.kind in ("near-tie", "shorter") else "err"


def same_cell(c: Comparison, temperature: float) -> str:
    """The Compare table's "same output" cell: every timed run's output against the reference."""
    if c.identical:
        return "✓ yes"
    return "≈ tie" if identity_kind(temperature, c.divergence) == "warn" else "✗ no"


def bound_note(c: Comparison) -> str:
    """What the page says when a timed round measured above its bound (core.api.bound)."""
    if not c.above_bound:
        return ""
    if c.all_above_bound:
        return (
            f"every timed round measured above its bound (τ = {max(c.bounds):.2f}: no speedup can exceed "
            "the tokens per step), and again when measured a second time: the speedup shown is machine noise, not a verdict "
            "(another process competing for the cores slows plain decoding's many small steps most)"
        )
    return (
        f"a timed round measured above its bound (τ = {max(c.bounds):.2f}: no speedup can exceed "
        "the tokens per step) and again when measured a second time: machine noise, that round is left out"
    )


def status_line(c: Comparison, temperature: float) -> tuple[str, str]:
    """(HTML, status kind) of the Run tab's status: the speedup, the identity verdict, a flagged round."""
    speed, kind = speed_message(c)
    div = c.divergence
    same = "identical ✓" if div.identical else "differs (" + html.escape(differs_note(temperature, div), quote=False) + ")"
    msg = f"{speed}, output {same}"
    same_kind = identity_kind(temperature, div)
    kind = same_kind if same_kind != "ok" else kind
    if c.above_bound:
        msg += f"; {html.escape(bound_note(c), quote=False)}"
    return msg, kind


def badge(text: str, color: str) -> str:
    return (
        f'<span style="display:inline-block;padding:2px 10px;border-radius:999px;'
        f'background:{color};color:white;font-weight:600">{text}</span>'
    )


def identity_badge(c: Comparison, n_tokens: int, temperature) -> str:
    """The summary's identity line: green identical, grey sampling, amber a rounding tie, red a
    real disagreement (the divergence of the reported round, classified by core/divergence.py)."""
    div = c.divergence
    if div.identical:
        return badge("✓ identical output", GREEN) + f" same {n_tokens} token ids as plain decoding"
    if isinstance(temperature, (int, float)) and temperature > 0:
        return (
            badge("≠ outputs differ (expected when sampling)", "#64748b")
            + f" first difference at token {div.position}; at temperature {temperature} compare distributions, not strings"
        )
    if div.kind in ("near-tie", "shorter"):
        return badge("≈ identical up to a rounding tie", AMBER) + f" {html.escape(div.text)}"
    return badge("✗ outputs differ", RED) + f" {html.escape(div.text)}"
