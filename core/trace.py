"""The trace of a decoding run: what the UI, the benchmark and the tests read.

One ``Step`` per target forward after prefill. Recording a step appends a few
small lists, so tracing costs next to nothing; token strings are resolved once
at the end (``Trace.finish``). ``Trace.to_json()`` is the versioned, stable format
(``SCHEMA``); ``Trace.from_json`` reads it back for re-rendering without a model. A run timed
against plain decoding carries its verdict, ``Trace.comparison`` (core/comparison.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from .comparison import Comparison

SCHEMA = "specscope.trace/4"


def tau(new_tokens: int, steps: int) -> float:
    """τ as the papers define it (mean acceptance length): tokens committed per speculative step,
    the target's bonus / correction token included, the prefill's first token excluded. Plain
    decoding has τ = 1."""
    if not steps:
        return 1.0 if new_tokens else 0.0
    return (new_tokens - 1) / steps


# /2 added Step.discarded (accepted only counts committed tokens); /3 Step.margins, Trace.first_margin
# (the target's top-2 logit margin behind every committed token: core/divergence.py reads them);
# /4 Trace.comparison (the timed comparison with plain decoding; /3 kept a loose meta["ar_baseline"])
READABLE = ("specscope.trace/1", "specscope.trace/2", "specscope.trace/3", SCHEMA)


@dataclass
class Step:
    # the draft: node i has token tokens[i], parent parents[i] (-1 = root), depth depths[i]
    tokens: list[int]
    parents: list[int]
    depths: list[int]
    q: list[float]  # draft prob of each node's token
    p: list[float] | None  # target prob of each node's token given its parent (None if not measured)
    accepted: list[int]  # node indices of the accepted path
    rejected: list[int]  # node indices tried and rejected
    token: int  # the token the target added (bonus or correction)
    kind: str  # "bonus" | "correction"
    committed: list[int]  # token ids appended to the output this step (after EOS / length cut)
    t_draft: float
    t_verify: float
    t_other: float
    discarded: list[int] = field(default_factory=list)  # accepted by the target, but after EOS / the budget: not kept
    margins: list[float] = field(default_factory=list)  # top-1 minus top-2 target logit behind each committed token


@dataclass
class Trace:
    meta: dict = field(default_factory=dict)
    prompt_tokens: int = 0
    first_token: int | None = None  # produced by the prefill forward
    first_margin: float | None = None  # the prefill row's top-1 minus top-2 logit
    t_prefill: float = 0.0
    t_trace: float = 0.0  # time spent recording steps (included in t_other)
    steps: list[Step] = field(default_factory=list)
    wall_s: float = 0.0
    output: list[int] = field(default_factory=list)
    vocab: dict[str, str] = field(default_factory=dict)  # token id -> text piece
    text: str = ""
    stop_reason: str = ""
    schema: str = SCHEMA
    visual: dict | None = None  # per-token visual dependence (core/visual.py), only when asked
    comparison: Comparison | None = None  # timed against plain decoding (core/comparison.py), only when asked

    # ---- derived numbers -------------------------------------------------
    def summary(self) -> dict:
        n = len(self.output)
        steps = len(self.steps)
        fwd = 1 + steps if n else 0  # prefill + one forward per step
        acc = [len(s.accepted) for s in self.steps]
        drafted = sum(len(s.tokens) for s in self.steps)
        max_depth = max((max(s.depths, default=0) for s in self.steps), default=0)
        by_depth = []
        for d in range(1, max_depth + 1):
            tried = sum(1 for s in self.steps if max(s.depths, default=0) >= d)
            ok = sum(1 for a in acc if a >= d)
            by_depth.append(round(ok / tried, 4) if tried else None)
        t_draft = sum(s.t_draft for s in self.steps)
        t_verify = sum(s.t_verify for s in self.steps)
        t_other = sum(s.t_other for s in self.steps)
        return {
            "new_tokens": n,
            "target_forwards": fwd,
            "tau": round(tau(n, steps), 4),  # tokens per speculative step, bonus incl., prefill excl.
            "accepted_per_step": round(sum(acc) / steps, 4) if steps else 0.0,  # excl. bonus
            "drafted_per_step": round(drafted / steps, 4) if steps else 0.0,
            "acceptance_by_depth": by_depth,
            "wall_s": round(self.wall_s, 6),
            "tokens_per_s": round(n / self.wall_s, 3) if self.wall_s > 0 else 0.0,
            "time_split": {
                "prefill": round(self.t_prefill, 6),
                "draft": round(t_draft, 6),
                "verify": round(t_verify, 6),
                "other": round(t_other, 6),
            },
            "trace_overhead": round(self.t_trace / self.wall_s, 5) if self.wall_s > 0 else 0.0,
            "stop_reason": self.stop_reason,
        }

    def margins(self) -> list[float | None]:
        """The target's top-2 logit margin behind every output token (None where not recorded)."""
        out = [self.first_margin] if self.output else []
        for s in self.steps:
            out += list(s.margins) + [None] * (len(s.committed) - len(s.margins))
        return out[: len(self.output)]

    def token_origins(self) -> list[tuple[int, str, int]]:
        """(token id, origin, step) for every output token; origin in
        prefill | accepted | bonus | correction. Step -1 is the prefill."""
        out: list[tuple[int, str, int]] = []
        if self.first_token is not None and self.output:
            out.append((self.first_token, "prefill", -1))
        for i, s in enumerate(self.steps):
            kinds = ["accepted"] * len(s.accepted) + [s.kind]
            for tok, kind in zip(s.committed, kinds):
                out.append((tok, kind, i))
        return out

    # ---- (de)serialisation -----------------------------------------------
    def finish(self, decode_piece) -> None:
        """Resolve token strings for every id in the trace (once, after decoding)."""
        ids = set(self.output)
        for s in self.steps:
            ids.update(s.tokens)
        self.vocab = {str(i): decode_piece(i) for i in sorted(ids)}

    def to_dict(self) -> dict:
        d = asdict(replace(self, comparison=None))  # its traces are in-memory only: to_json keeps the numbers
        d["comparison"] = self.comparison.to_json() if self.comparison is not None else None
        d["summary"] = self.summary()
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict) -> Trace:
        if not isinstance(d, dict) or d.get("schema") not in READABLE:
            raise ValueError(f"not a SpecScope trace (expected schema {SCHEMA!r})")
        d = dict(d)
        d.pop("summary", None)
        steps = [Step(**_upgrade_step(s)) for s in d.pop("steps", [])]
        d["schema"] = SCHEMA
        cmp = d.pop("comparison", None)
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        tr = cls(steps=steps, **known)
        tr.meta = dict(tr.meta or {})
        old = tr.meta.pop("ar_baseline", None)  # schema /3's record of the same comparison
        if isinstance(cmp, dict):
            tr.comparison = Comparison.from_json(cmp)
        elif isinstance(old, dict) and isinstance(old.get("output"), list):
            try:
                tr.comparison = Comparison.from_ar_baseline(old, tr)
            except (KeyError, TypeError, ValueError):  # a damaged record: the run without its comparison
                tr.comparison = None
        return tr

    @classmethod
    def from_json(cls, text: str) -> Trace:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"not a SpecScope trace: {e}") from None


def _upgrade_step(s: dict) -> dict:
    """A schema-1 step counted tokens drafted after EOS as accepted: keep only the committed ones."""
    s = dict(s)
    if "discarded" not in s:
        n = min(len(s["accepted"]), len(s.get("committed", [])))
        s["accepted"], s["discarded"] = s["accepted"][:n], s["accepted"][n:]
    return s


def result_json(trace: Trace) -> dict:
    """The run as the CLI's ``--json`` and the app's raw result report it."""
    s = trace.summary()
    return {
        "text": trace.text,
        "token_ids": list(trace.output),
        "summary": {k: s[k] for k in ("new_tokens", "target_forwards", "tau", "wall_s", "tokens_per_s")}
        | {"accepted_per_step": s["accepted_per_step"], "acceptance_by_depth": s["acceptance_by_depth"], "stop_reason": s["stop_reason"]},
    }
