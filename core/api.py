"""High-level entry points shared by the CLI, the app and the benchmark.

    pair = load_pair("default", "ngram")                    # cached target + drafter
    trace = run(pair, prompt, image, spec, sampling, max_new_tokens)
    warm(pair, prompt, image, spec, sampling)                # one-off costs, outside timings
    result = compare(pair, prompt, image, spec, sampling, max_new_tokens, repeats=3)
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from . import adapters, device as devices
from .drafters import DraftSpec, make_drafter
from .errors import ModelLoadError
from .engine import generate
from .sampling import SamplingConfig
from .trace import Trace
from .streaming import stream  # noqa: F401

from .paths import SHIPPED_DRAFTERS, resolve_target


@dataclass
class Pair:
    target: adapters.HFAdapter
    drafter: object | None
    target_name: str
    drafter_name: str | None


_cache: "OrderedDict[tuple, object]" = OrderedDict()
_cache_lock = threading.RLock()


def max_models() -> int:
    """Targets kept in memory (least recently used dropped first, with their drafters)."""
    try:
        return max(1, int(os.environ.get("SPECSCOPE_MAX_MODELS", "2")))
    except ValueError:
        return 2


def _evict(keep: tuple) -> None:
    targets = [k for k in _cache if k[0] == "target"]
    while len(targets) > max_models():
        old = next(k for k in targets if k != keep)
        tid = id(_cache.pop(old))
        for k in [k for k in _cache if k[0] == "drafter" and k[1] == tid]:
            del _cache[k]
        targets.remove(old)


def default_device(device: str | None = None) -> str:
    """``device``, or when None the operator's ``SPECSCOPE_DEVICE`` (unset: "cpu"), resolved by
    ``device.resolve_device`` ("auto" -> cuda if there is a CUDA GPU). CPU unless asked."""
    if device is None:
        device = os.environ.get("SPECSCOPE_DEVICE", "").strip() or "cpu"
    return devices.resolve_device(device)


def load_target(name: str | None, dtype: str = "float32", trust_remote_code: bool = False,
                device: str | None = None, kernels: str | None = None) -> adapters.HFAdapter:
    """``dtype`` may be "auto" (bfloat16 where the CPU/GPU computes it natively, else float32);
    the library default stays float32, the CLI, the bench and the app default to "auto".
    ``device``: cpu | cuda[:N] | auto; None = ``SPECSCOPE_DEVICE`` or cpu (see ``default_device``)."""
    device = default_device(device)
    dtype = devices.resolve_dtype(dtype, device)
    kernels = kernels or devices.kernels_default()
    key = ("target", resolve_target(name), dtype, device, kernels)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = adapters.load(key[1], dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                                        kernels=kernels)
        _cache.move_to_end(key)
        _evict(key)
        return _cache[key]


def load_pair(target: str | None, drafter: str | None = None, dtype: str = "float32",
              mode: str = "multimodal", trust_remote_code: bool = False, device: str | None = None,
              kernels: str | None = None, **options) -> Pair:
    """The target (cached per name, dtype and device) and a drafter for it; drafters run on the
    target's device (``drafters.base.draft_dtype``: fp32 on a CPU, the target's dtype on a GPU)."""
    tgt = load_target(target, dtype, trust_remote_code, device, kernels)
    if drafter in SHIPPED_DRAFTERS:
        path = SHIPPED_DRAFTERS[drafter]
        if not path.exists():
            raise ModelLoadError(f"drafter {drafter!r} is not trained yet ({path} is missing)")
        drafter_arg = str(path)
    else:
        drafter_arg = drafter
    d = None
    if drafter_arg and str(drafter_arg).lower() not in ("none", "ar"):
        key = ("drafter", id(tgt), drafter_arg, mode, tuple(sorted(options.items())))
        with _cache_lock:
            if key not in _cache:
                # drafter models pick their own dtype (drafters.base.draft_dtype: fp32 on a CPU)
                _cache[key] = make_drafter(drafter_arg, tgt, mode=mode,
                                           kernels=tgt.kernels.get("requested"), **options)
            d = _cache[key]
    return Pair(tgt, d, resolve_target(target), drafter)


_policies: dict = {}


def policy_for(pair: Pair, sampling: SamplingConfig):
    """The adaptive-length policy of this target + drafter (one for greedy, one for sampling): its
    cost model and acceptance statistics carry over from run to run, like a warm cache."""
    from .policy import AutoPolicy
    key = (id(pair.target), id(pair.drafter), sampling.greedy)
    with _cache_lock:
        if key not in _policies:
            _policies[key] = AutoPolicy.measured(pair.target)
        return _policies[key]


def run(pair: Pair, prompt: str, image=None, spec: DraftSpec = DraftSpec(),
        sampling: SamplingConfig = SamplingConfig(), max_new_tokens: int = 64, speculative: bool = True,
        **kw) -> Trace:
    drafter = pair.drafter if speculative else None
    if drafter is not None and spec.adaptive and "policy" not in kw:
        kw["policy"] = policy_for(pair, sampling)
    return generate(pair.target, prompt, image, drafter, spec, sampling, max_new_tokens, **kw)


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


def result_json(trace: Trace) -> dict:
    s = trace.summary()
    return {"text": trace.text, "token_ids": list(trace.output),
            "summary": {k: s[k] for k in ("new_tokens", "target_forwards", "tau", "wall_s", "tokens_per_s")}
            | {"accepted_per_step": s["accepted_per_step"], "acceptance_by_depth": s["acceptance_by_depth"],
               "stop_reason": s["stop_reason"]}}


def threads_from_env() -> None:
    n = os.environ.get("SPECSCOPE_THREADS")
    if n:
        import torch
        torch.set_num_threads(int(n))


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
