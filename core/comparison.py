"""One input decoded plainly and speculatively by the same target: the speed and identity verdict.

    cmp = api.compare(pair, prompt, image, spec, sampling, max_new_tokens, repeats=3)
    cmp.speedup            median tok/s ratio (speculative / plain) of the rounds within their bound
    cmp.identical          every speculative output equals the identity reference's
    cmp.divergence         how the reported round differs from the reference (core/divergence.py)
    cmp.spec_trace         the reported round's speculative trace; ``spec_trace.comparison is cmp``
    cmp.to_json()          what the trace file holds (``Trace.comparison``, schema /4)

The numbers are decided here, once: ``Comparison.of`` measures nothing, it reads the traces
``api.compare`` timed. Readers (the app, the CLI, the trace viewer) show them and never recompute
a speedup or an identity verdict. The traces themselves stay in memory only (``plain_traces``,
``spec_traces``, ``reference_trace``); the JSON keeps their numbers (``Timing``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from .divergence import Divergence, explain, explain_traces

if TYPE_CHECKING:
    from .trace import Trace

SLACK = 1.10  # measurement noise allowed above a speedup's bound before a round is re-measured
BASELINES = ("exact", "unpadded")


def speedup(plain: Trace, spec: Trace) -> float:
    """Speculative over plain decoding, by tokens per second (answers of different lengths, e.g. at
    T > 0, compare fairly; for equal lengths it is the ratio of wall times)."""
    a, s = plain.summary()["tokens_per_s"], spec.summary()["tokens_per_s"]
    return s / a if a > 0 else 0.0


def bound(spec: Trace) -> float:
    """The most a speculative run can gain: τ (tokens per speculative step). A step runs at least
    one target forward, which costs no less than a plain step of the same model, so a measured
    speedup above τ is machine noise in one of the two runs, never a fact."""
    return max(1.0, spec.summary()["tau"])


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


@dataclass(frozen=True)
class Timing:
    """One timed decoding, as the page and the trace file report it (``Trace.summary``'s numbers)."""

    new_tokens: int
    wall_s: float
    tokens_per_s: float
    tau: float  # tokens per speculative step; 1 for plain decoding
    stop_reason: str = ""

    @classmethod
    def of(cls, trace: Trace) -> Timing:
        s = trace.summary()
        return cls(s["new_tokens"], s["wall_s"], s["tokens_per_s"], s["tau"], s["stop_reason"])

    @classmethod
    def from_json(cls, d: dict) -> Timing:
        return cls(int(d["new_tokens"]), float(d["wall_s"]), float(d["tokens_per_s"]), float(d["tau"]), str(d.get("stop_reason", "")))


def divergence_from_json(d: dict) -> Divergence:
    """``Divergence.to_json`` read back (its ``text`` is derived, so dropped)."""

    def pair(v):
        return tuple(v) if v is not None else None

    return Divergence(
        str(d["kind"]),
        d.get("position"),
        pair(d.get("tokens")),
        pair(d.get("margins")),
        d.get("tolerance"),
        str(d.get("dtype", "")),
    )


@dataclass
class Comparison:
    """Plain and speculative decoding of one input, ``len(speedups)`` rounds, alternating.

    ``plain`` / ``spec``: the reported round's two runs (the round whose speedup is the median of
    the rounds within their bound); ``plain_runs`` / ``spec_runs``: every round's (empty in a trace
    upgraded from schema /3, which kept only the reported round). The speed baseline is the
    fastest plain decoding of the machine: ``baseline`` "exact" (its runs are also the identity
    reference) or "unpadded" (one-row steps timed; one exact run made for identity, core/rows.py).
    A round whose speedup stays above its bound (τ, ``bound``) after one re-measurement is
    ``flagged`` and left out of the median."""

    baseline: str
    plain: Timing
    spec: Timing
    speedup: float
    speedups: list[float]
    bounds: list[float]
    flagged: list[int]
    plain_tokens_per_s: float  # median over the speed baseline's runs
    plain_output: list[int]
    plain_text: str
    reference_output: list[int]
    identical: bool  # every speculative run's output equals the reference's
    divergence: Divergence  # the reported round against the reference
    reported: int = 0  # index of the reported round
    plain_runs: list[Timing] = field(default_factory=list)
    spec_runs: list[Timing] = field(default_factory=list)
    # in memory only: the traces behind the numbers (never saved)
    plain_traces: list = field(default_factory=list, compare=False, repr=False)
    spec_traces: list = field(default_factory=list, compare=False, repr=False)
    reference_trace: Trace | None = field(default=None, compare=False, repr=False)

    # ---- derived ---------------------------------------------------------
    @property
    def above_bound(self) -> bool:
        return bool(self.flagged)

    @property
    def all_above_bound(self) -> bool:
        """Every round flagged: the speedup reported comes from them all, so it is noise, not a verdict."""
        return bool(self.flagged) and len(self.flagged) == len(self.speedups)

    @property
    def tau(self) -> float:
        return self.spec.tau

    @property
    def rounds(self) -> int:
        return len(self.speedups)

    @property
    def plain_trace(self) -> Trace | None:
        return self.plain_traces[self.reported] if self.plain_traces else None

    @property
    def spec_trace(self) -> Trace | None:
        return self.spec_traces[self.reported] if self.spec_traces else None

    # ---- built from measured traces ----------------------------------------
    @classmethod
    def of(cls, plain: list[Trace], spec: list[Trace], reference: Trace, baseline: str = "exact") -> Comparison:
        """The verdict of ``len(spec)`` rounds: round i is ``plain[i]`` against ``spec[i]``. A round
        above its bound (x ``SLACK``) is flagged; the reported round is the median of the others
        (of all rounds when every one is flagged). ``reference``: the identity reference."""
        if not spec or len(plain) != len(spec):
            raise ValueError(f"a comparison needs one plain run per speculative run, got {len(plain)} and {len(spec)}")
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
        n = len(spec)
        ratios = [speedup(a, s) for a, s in zip(plain, spec)]
        bounds = [bound(s) for s in spec]
        flagged = [i for i in range(n) if ratios[i] > bounds[i] * SLACK]
        within = [i for i in range(n) if i not in flagged] or list(range(n))
        mid = sorted(within, key=lambda i: ratios[i])[(len(within) - 1) // 2]
        plain_runs, spec_runs = [Timing.of(t) for t in plain], [Timing.of(t) for t in spec]
        return cls(
            baseline=baseline,
            plain=plain_runs[mid],
            spec=spec_runs[mid],
            speedup=round(median([ratios[i] for i in within]), 4),
            speedups=[round(x, 4) for x in ratios],
            bounds=[round(x, 4) for x in bounds],
            flagged=flagged,
            plain_tokens_per_s=round(median([t.tokens_per_s for t in plain_runs]), 3),
            plain_output=list(plain[mid].output),
            plain_text=plain[mid].text,
            reference_output=list(reference.output),
            identical=all(s.output == reference.output for s in spec),
            divergence=explain_traces(reference, spec[mid]),
            reported=mid,
            plain_runs=plain_runs,
            spec_runs=spec_runs,
            plain_traces=list(plain),
            spec_traces=list(spec),
            reference_trace=reference,
        )

    # ---- (de)serialisation -------------------------------------------------
    def to_json(self) -> dict:
        """A JSON-able dict (the divergence with its text); the traces are not included."""
        return {
            "baseline": self.baseline,
            "plain": asdict(self.plain),
            "spec": asdict(self.spec),
            "speedup": self.speedup,
            "speedups": list(self.speedups),
            "bounds": list(self.bounds),
            "flagged": list(self.flagged),
            "plain_tokens_per_s": self.plain_tokens_per_s,
            "plain_output": list(self.plain_output),
            "plain_text": self.plain_text,
            "reference_output": list(self.reference_output),
            "identical": self.identical,
            "divergence": self.divergence.to_json(),
            "reported": self.reported,
            "plain_runs": [asdict(t) for t in self.plain_runs],
            "spec_runs": [asdict(t) for t in self.spec_runs],
        }

    @classmethod
    def from_json(cls, d: dict) -> Comparison:
        if not isinstance(d, dict):
            raise ValueError("not a SpecScope comparison: expected an object")
        try:
            return cls(
                baseline=str(d["baseline"]),
                plain=Timing.from_json(d["plain"]),
                spec=Timing.from_json(d["spec"]),
                speedup=float(d["speedup"]),
                speedups=[float(x) for x in d["speedups"]],
                bounds=[float(x) for x in d["bounds"]],
                flagged=[int(x) for x in d["flagged"]],
                plain_tokens_per_s=float(d["plain_tokens_per_s"]),
                plain_output=[int(x) for x in d["plain_output"]],
                plain_text=str(d["plain_text"]),
                reference_output=[int(x) for x in d["reference_output"]],
                identical=bool(d["identical"]),
                divergence=divergence_from_json(d["divergence"]),
                reported=int(d.get("reported", 0)),
                plain_runs=[Timing.from_json(t) for t in d.get("plain_runs", [])],
                spec_runs=[Timing.from_json(t) for t in d.get("spec_runs", [])],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a SpecScope comparison: {type(e).__name__} {e}") from None

    @classmethod
    def from_ar_baseline(cls, d: dict, trace: Trace) -> Comparison:
        """A schema-/3 trace's ``meta["ar_baseline"]`` (what the app wrote before /4: the reported
        round's plain answer, the rounds' speedups, and, since /3, the reference, the classified
        divergence and the bounds) as a Comparison of ``trace``, its speculative run. What the
        old record lacks is filled as the app showed it then: the plain answer is the identity
        reference, the speedup the tok/s ratio of the two runs, the divergence classified from
        the outputs (margins recorded on the speculative side only)."""
        out = [int(x) for x in d["output"]]
        wall = float(d.get("wall_s", 0.0))
        plain = Timing(
            len(out), round(wall, 6), round(len(out) / wall, 3) if wall > 0 else 0.0, 1.0 if out else 0.0, str(d.get("stop_reason", ""))
        )
        spec = Timing.of(trace)
        ref = [int(x) for x in d.get("reference_output", out)]
        if isinstance(d.get("divergence"), dict):
            div = divergence_from_json(d["divergence"])
        else:
            div = explain(ref, list(trace.output), None, trace.margins(), trace.meta.get("dtype", "float32"))
        ratio = spec.tokens_per_s / plain.tokens_per_s if plain.tokens_per_s > 0 else 0.0
        med = round(float(d["speedup"]), 4) if d.get("speedup") is not None else round(ratio, 4)
        speedups = [round(float(x), 4) for x in d.get("speedups") or [med]]
        bounds = [round(float(x), 4) for x in d.get("bounds") or []]
        flagged = [i for i, (r, b) in enumerate(zip(speedups, bounds)) if r > b * SLACK] if d.get("above_bound") else []
        return cls(
            baseline=str(d.get("baseline", "exact")),
            plain=plain,
            spec=spec,
            speedup=med,
            speedups=speedups,
            bounds=bounds,
            flagged=flagged,
            plain_tokens_per_s=plain.tokens_per_s,
            plain_output=out,
            plain_text=str(d.get("text", "")),
            reference_output=ref,
            identical=list(trace.output) == ref,
            divergence=div,
            reported=speedups.index(med) if med in speedups else 0,
        )
