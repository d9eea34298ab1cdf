"""Why two decodings of one input differ: the one classifier the page, the bench and the audit use.

    d = explain(reference.output, other.output, reference.margins(), other.margins(), dtype)
    d.kind        "identical" | "near-tie" | "disagreement" | "shorter" (one output stops early)
    d.text        "identical up to a bfloat16 rounding tie at token 37 (margins 0.02 / 0.06)"

At the first differing position each run's target chose its top-1 token; its margin is the top-1
logit minus the top-2 logit of the row that chose it (recorded in the trace, ``Trace.margins``).
Two computations of the same numbers that differ only in rounding can only disagree where both
choices were near-ties: both margins within a few units in the last place of the logits' dtype.
A wide margin on either side means the two runs computed different things (a bug: a wrong mask,
position or cache slot). ``tolerance`` is that bound: ``REL[dtype]`` times the logit's magnitude.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# relative rounding bound of a logit computed two ways: bf16 has 8 significant bits (2^-8), fp16 11,
# fp32 24; a whole model accumulates a few units of those through its layers
REL = {"bfloat16": 2.0**-6, "float16": 2.0**-9, "float32": 2.0**-16}
FLOOR = 1e-4  # the bound never drops below this (logits near 0)


def tolerance(dtype: str, logit_scale: float = 16.0) -> float:
    return max(FLOOR, REL.get(str(dtype).replace("torch.", ""), REL["float32"]) * abs(logit_scale))


@dataclass
class Divergence:
    kind: str  # identical | near-tie | disagreement | shorter
    position: int | None = None  # first output index where the tokens differ
    tokens: tuple | None = None  # (reference token, other token) there
    margins: tuple | None = None  # (reference margin, other margin) there; None: not recorded
    tolerance: float | None = None
    dtype: str = ""

    @property
    def identical(self) -> bool:
        return self.kind == "identical"

    @property
    def text(self) -> str:
        if self.kind == "identical":
            return "identical"
        if self.kind == "shorter":
            return f"identical for {self.position} tokens, then one answer stops"
        m = self.margins or (None, None)
        shown = " / ".join("?" if x is None else f"{x:.3g}" for x in m)
        if self.kind == "near-tie":
            return (
                f"identical up to a {self.dtype} rounding tie at token {self.position} (top-2 margins {shown}, within {self.tolerance:.3g})"
            )
        return (
            f"differs from token {self.position}: a real disagreement (top-2 margins {shown}, "
            f"rounding explains at most {self.tolerance:.3g})"
            if self.tolerance is not None
            else f"differs from token {self.position} (margins not recorded)"
        )

    def to_json(self) -> dict:
        return asdict(self) | {"text": self.text}


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first index where ``a`` and ``b`` differ (a shorter one ends there); None if equal."""
    pos = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    if pos is None and len(a) != len(b):
        pos = min(len(a), len(b))
    return pos


def explain(
    ref: list[int], other: list[int], ref_margins=None, other_margins=None, dtype: str = "float32", logit_scale: float = 16.0
) -> Divergence:
    """Classify how ``other`` differs from ``ref`` (see module docstring)."""
    dtype = str(dtype).replace("torch.", "")
    pos = first_difference(ref, other)
    if pos is None:
        return Divergence("identical", dtype=dtype)
    if pos >= min(len(ref), len(other)):
        return Divergence("shorter", pos, dtype=dtype)

    def at(ms):
        return ms[pos] if ms is not None and pos < len(ms) else None

    m = (at(ref_margins), at(other_margins))
    tol = tolerance(dtype, logit_scale)
    known = [x for x in m if x is not None]
    if not known:
        return Divergence("disagreement", pos, (ref[pos], other[pos]), m, None, dtype)
    kind = "near-tie" if len(known) == 2 and max(known) <= tol else "disagreement"
    return Divergence(kind, pos, (ref[pos], other[pos]), m, tol, dtype)


def explain_traces(ref, other) -> Divergence:
    """``explain`` for two traces of one input (their recorded margins and dtype)."""
    return explain(list(ref.output), list(other.output), ref.margins(), other.margins(), ref.meta.get("dtype", "float32"))
