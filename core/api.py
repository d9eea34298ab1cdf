"""High-level entry points shared by the CLI, the app and the benchmark.

pair = load_pair("default", "ngram")                    # cached target + drafter
trace = run(pair, prompt, image, spec, sampling, max_new_tokens)
warm(pair, prompt, image, spec, sampling)                # one-off costs, outside timings
result = compare(pair, prompt, image, spec, sampling, max_new_tokens, repeats=3)
"""

from __future__ import annotations

from . import costs
from .device import threads_from_env
from .drafters import DraftSpec
from .divergence import explain_traces
from .engine import generate
from .pairs import Pair, default_device, load_pair, load_target, max_models, policy_for
from .rows import row_set
from .sampling import SamplingConfig
from .streaming import follow
from .trace import Trace, result_json

# the facade: what the CLI, the app, the bench and the tuner call
__all__ = [
    "Pair",
    "load_pair",
    "load_target",
    "default_device",
    "max_models",
    "policy_for",
    "warm",
    "run",
    "compare",
    "speedup",
    "bound",
    "stream",
    "result_json",
    "threads_from_env",
    "visual_dependence",
]


def run(
    pair: Pair,
    prompt: str,
    image=None,
    spec: DraftSpec = DraftSpec(),
    sampling: SamplingConfig = SamplingConfig(),
    max_new_tokens: int = 64,
    speculative: bool = True,
    **kw,
) -> Trace:
    drafter = pair.drafter if speculative else None
    if drafter is not None and spec.adaptive and "policy" not in kw:
        kw["policy"] = policy_for(pair, sampling)
    return generate(pair.target, prompt, image, drafter, spec, sampling, max_new_tokens, **kw)


def stream(
    pair: Pair,
    prompt: str,
    image=None,
    spec: DraftSpec = DraftSpec(),
    sampling: SamplingConfig = SamplingConfig(),
    max_new_tokens: int = 64,
    *,
    speculative: bool = True,
    should_stop=None,
    every: float = 0.25,
    **kw,
):
    """``run`` in a worker thread (``core/streaming.py``): yields snapshot traces while steps
    complete, then the finished trace. ``kw`` as for ``run`` (``meta=``, ``detail=`` ...)."""
    spec, sampling = spec or DraftSpec(), sampling or SamplingConfig()

    def decode(on_step, should_stop):
        return run(pair, prompt, image, spec, sampling, max_new_tokens, speculative, on_step=on_step, should_stop=should_stop, **kw)

    return follow(decode, pair.target, should_stop, every)


_warmed: set = set()


def warm(
    pair: Pair,
    prompt: str,
    image=None,
    spec: DraftSpec = DraftSpec(),
    sampling: SamplingConfig = SamplingConfig(),
    tokens: int = 8,
    force: bool = False,
) -> bool:
    """Pay the one-off costs (allocator, kernels, the cost model's first measurement) of this pair
    in this process, outside any timed run: one short plain and one short speculative run. Done
    once per (target, drafter, strategy, sampling kind) unless ``force``; returns whether it ran."""
    key = (id(pair.target), id(pair.drafter), spec.strategy, sampling.greedy, image is not None)
    if key in _warmed and not force:
        return False
    run(pair, prompt, image, spec, sampling, tokens, speculative=False, detail=False)  # measures core.rows
    if row_set(pair.target).sizes[:1] not in ((), (1,)):  # the unpadded speed baseline, too
        run(pair, prompt, image, spec, sampling, tokens, speculative=False, detail=False, exact=False)
    if pair.drafter is not None:
        run(pair, prompt, image, spec, sampling, tokens, detail=False)
    _warmed.add(key)
    return True


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


SLACK = 1.10  # measurement noise allowed above a speedup's bound before a round is re-measured


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


def compare(
    pair: Pair,
    prompt: str,
    image=None,
    spec: DraftSpec = DraftSpec(),
    sampling: SamplingConfig = SamplingConfig(),
    max_new_tokens: int = 64,
    warmup: bool = True,
    repeats: int = 1,
    baseline: list | None = None,
    reference: Trace | None = None,
    **kw,
) -> dict:
    """The same input decoded autoregressively and speculatively by the same target, ``repeats``
    times, alternating plain and speculative runs so that a slow moment of the machine hits both.

    Two plain decodings play two roles (``core/rows.py``): the **identity reference** is the exact
    plain decoding (every forward at a row-invariant row count); the **speed baseline** is the
    fastest plain decoding of this machine, which is the same runs unless padding a one-token step
    costs time here (then unpadded one-row steps are timed, and one exact run is made for identity).

    The speedup of a round is speculative tok/s over plain tok/s; a round above its bound
    (``bound``) is measured again once, and flagged if it stays above. The speedup reported is the
    median of the rounds within their bound (all rounds when none is). ``baseline``: plain traces
    measured earlier on the same input, ``reference``: its identity reference (Compare rows share
    both); more plain runs are measured, interleaved, when there are fewer than ``repeats``.
    Returns {"ar", "spec": the traces of the median round, "speedup", "speedups", "ar_runs",
    "spec_runs", "reference", "baseline" ("exact" | "unpadded"), "plain_tokens_per_s" (median of the
    baseline's runs), "bounds", "above_bound", "identical", "divergence" (core.divergence)}."""
    repeats = max(1, int(repeats))
    if warmup:  # first calls pay one-off costs; keep them out of both timings
        warm(pair, prompt, image, spec, sampling, min(8, max_new_tokens))
    rows = row_set(pair.target)
    unpadded = rows.exact and rows.sizes[0] > 1
    ars = list(baseline or [])
    sps: list[Trace] = []
    for i in range(repeats):
        if i >= len(ars):
            ars.append(run(pair, prompt, image, spec, sampling, max_new_tokens, speculative=False, exact=not unpadded, **kw))
        sps.append(run(pair, prompt, image, spec, sampling, max_new_tokens, **kw))
    ars = ars[:repeats]
    for i in range(repeats):  # a round above its bound: measured again, once
        if speedup(ars[i], sps[i]) > bound(sps[i]) * SLACK:
            sps[i] = run(pair, prompt, image, spec, sampling, max_new_tokens, **kw)
    ratios = [speedup(a, s) for a, s in zip(ars, sps)]
    bounds = [bound(s) for s in sps]
    above = [i for i in range(repeats) if ratios[i] > bounds[i] * SLACK]
    within = [i for i in range(repeats) if i not in above] or list(range(repeats))
    mid = sorted(within, key=lambda i: ratios[i])[(len(within) - 1) // 2]
    if reference is None:
        reference = ars[0] if not unpadded else run(pair, prompt, image, spec, sampling, max_new_tokens, speculative=False, **kw)
    div = explain_traces(reference, sps[mid])
    steps = [(a.wall_s - a.t_prefill) / len(a.steps) for a in ars if a.steps]
    if steps:
        costs.observe_plain(pair.target, _median(steps))  # prices replay and Teach's map alike
    return {
        "ar": ars[mid],
        "spec": sps[mid],
        "speedup": _median([ratios[i] for i in within]),
        "speedups": ratios,
        "ar_runs": ars,
        "spec_runs": sps,
        "reference": reference,
        "baseline": "unpadded" if unpadded else "exact",
        "plain_tokens_per_s": _median([a.summary()["tokens_per_s"] for a in ars]),
        "bounds": bounds,
        "above_bound": bool(above),
        "identical": all(s.output == reference.output for s in sps),
        "divergence": div,
    }


def visual_dependence(
    pair: Pair, trace: Trace, prompt: str, image=None, baseline: str = "none", threshold: float | None = None, store: bool = True
) -> dict:
    """Per-token visual dependence of ``trace``'s output (core/visual.py): two teacher-forced
    target forwards, with and without the image; its cost in seconds is ``result["cost_s"]``.
    Stored in ``trace.visual`` unless ``store=False``."""
    from . import visual as V

    res = V.visual_dependence(
        pair.target, prompt, image, list(trace.output), baseline=baseline, threshold=V.KL_THRESHOLD if threshold is None else threshold
    )
    if store:
        trace.visual = res
    return res
