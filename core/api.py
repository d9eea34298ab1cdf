"""High-level entry points shared by the CLI, the app and the benchmark.

    pair = load_pair("default", "ngram")                    # cached target + drafter
    trace = run(pair, prompt, image, spec, sampling, max_new_tokens)
    warm(pair, prompt, image, spec, sampling)                # one-off costs, outside timings
    result = compare(pair, prompt, image, spec, sampling, max_new_tokens, repeats=3)
"""
from __future__ import annotations

from .device import threads_from_env
from .drafters import DraftSpec
from .engine import generate
from .pairs import Pair, default_device, load_pair, load_target, max_models, policy_for
from .sampling import SamplingConfig
from .streaming import follow
from .trace import Trace, result_json

# the facade: what the CLI, the app, the bench and the tuner call
__all__ = ["Pair", "load_pair", "load_target", "default_device", "max_models", "policy_for", "warm", "run",
           "compare", "stream", "result_json", "threads_from_env", "visual_dependence"]


def run(pair: Pair, prompt: str, image=None, spec: DraftSpec = DraftSpec(),
        sampling: SamplingConfig = SamplingConfig(), max_new_tokens: int = 64, speculative: bool = True,
        **kw) -> Trace:
    drafter = pair.drafter if speculative else None
    if drafter is not None and spec.adaptive and "policy" not in kw:
        kw["policy"] = policy_for(pair, sampling)
    return generate(pair.target, prompt, image, drafter, spec, sampling, max_new_tokens, **kw)


def stream(pair: Pair, prompt: str, image=None, spec: DraftSpec = DraftSpec(),
           sampling: SamplingConfig = SamplingConfig(), max_new_tokens: int = 64, *, speculative: bool = True,
           should_stop=None, every: float = 0.25, **kw):
    """``run`` in a worker thread (``core/streaming.py``): yields snapshot traces while steps
    complete, then the finished trace. ``kw`` as for ``run`` (``meta=``, ``detail=`` ...)."""
    spec, sampling = spec or DraftSpec(), sampling or SamplingConfig()

    def decode(on_step, should_stop):
        return run(pair, prompt, image, spec, sampling, max_new_tokens, speculative, on_step=on_step,
                   should_stop=should_stop, **kw)
    return follow(decode, pair.target, should_stop, every)


_warmed: set = set()


def warm(pair: Pair, prompt: str, image=None, spec: DraftSpec = DraftSpec(),
         sampling: SamplingConfig = SamplingConfig(), tokens: int = 8, force: bool = False) -> bool:
    """Pay the one-off costs (allocator, kernels, the cost model's first measurement) of this pair
    in this process, outside any timed run: one short plain and one short speculative run. Done
    once per (target, drafter, strategy, sampling kind) unless ``force``; returns whether it ran."""
    key = (id(pair.target), id(pair.drafter), spec.strategy, sampling.greedy,
           image is not None)
    if key in _warmed and not force:
        return False
    run(pair, prompt, image, spec, sampling, tokens, speculative=False, detail=False)
    if pair.drafter is not None:
        run(pair, prompt, image, spec, sampling, tokens, detail=False)
    _warmed.add(key)
    return True


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def compare(pair: Pair, prompt: str, image=None, spec: DraftSpec = DraftSpec(),
            sampling: SamplingConfig = SamplingConfig(), max_new_tokens: int = 64, warmup: bool = True,
            repeats: int = 1, baseline: list | None = None, **kw) -> dict:
    """The same input decoded autoregressively and speculatively by the same target, ``repeats``
    times, alternating plain and speculative runs so that a slow moment of the machine hits both.

    The speedup is the median of the per-round ratios, with its range. ``baseline``: plain traces
    measured earlier on the same input (Compare rows share one baseline); more are measured
    interleaved when there are fewer than ``repeats``. Returns {"ar", "spec": the traces of the
    median round, "speedup", "speedups", "ar_runs", "spec_runs", "identical"}."""
    repeats = max(1, int(repeats))
    if warmup:  # first calls pay one-off costs; keep them out of both timings
        warm(pair, prompt, image, spec, sampling, min(8, max_new_tokens))
    ars = list(baseline or [])
    sps: list[Trace] = []
    for i in range(repeats):
        if i >= len(ars):
            ars.append(run(pair, prompt, image, spec, sampling, max_new_tokens, speculative=False, **kw))
        sps.append(run(pair, prompt, image, spec, sampling, max_new_tokens, **kw))
    ars = ars[:repeats]
    ratios = [a.wall_s / s.wall_s if s.wall_s > 0 else 0.0 for a, s in zip(ars, sps)]
    mid = sorted(range(repeats), key=lambda i: ratios[i])[(repeats - 1) // 2]
    return {"ar": ars[mid], "spec": sps[mid], "speedup": _median(ratios), "speedups": ratios,
            "ar_runs": ars, "spec_runs": sps,
            "identical": all(a.output == s.output for a, s in zip(ars, sps))}


def visual_dependence(pair: Pair, trace: Trace, prompt: str, image=None, baseline: str = "none",
                      threshold: float | None = None, store: bool = True) -> dict:
    """Per-token visual dependence of ``trace``'s output (core/visual.py): two teacher-forced
    target forwards, with and without the image; its cost in seconds is ``result["cost_s"]``.
    Stored in ``trace.visual`` unless ``store=False``."""
    from . import visual as V
    res = V.visual_dependence(pair.target, prompt, image, list(trace.output), baseline=baseline,
                              threshold=V.KL_THRESHOLD if threshold is None else threshold)
    if store:
        trace.visual = res
    return res
