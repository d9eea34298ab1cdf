"""High-level entry points shared by the CLI, the app and the benchmark.

    pair = load_pair("default", "ngram")                    # cached target + drafter
    trace = run(pair, prompt, image, spec, sampling, max_new_tokens)
    result = compare(pair, prompt, image, spec, sampling, max_new_tokens)
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from . import adapters
from .drafters import DraftSpec, make_drafter
from .engine import generate
from .sampling import SamplingConfig
from .trace import Trace

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
DEFAULT_TARGET = ASSETS / "target"

# Drafters shipped for the embedded default target (trained by core/train/*).
SHIPPED_DRAFTERS = {
    "msd": ASSETS / "drafters" / "msd",
    "massv": ASSETS / "drafters" / "massv",
    "small-vlm": ASSETS / "drafters" / "small_vlm",
    "text-lm": ASSETS / "drafters" / "text_lm",
}


def resolve_target(name: str | None) -> str:
    if not name or name == "default":
        if not (DEFAULT_TARGET / "config.json").exists():
            raise adapters.ModelLoadError(
                "the embedded default model is missing (assets/target); train it with "
                "`python -m core.train.target --out assets/target` or pass --target")
        return str(DEFAULT_TARGET)
    return name


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
    ``adapters.resolve_device`` ("auto" -> cuda if there is a CUDA GPU). CPU unless asked."""
    if device is None:
        device = os.environ.get("SPECSCOPE_DEVICE", "").strip() or "cpu"
    return adapters.resolve_device(device)


def load_target(name: str | None, dtype: str = "float32", trust_remote_code: bool = False,
                device: str | None = None, kernels: str | None = None) -> adapters.HFAdapter:
    """``dtype`` may be "auto" (bfloat16 where the CPU/GPU computes it natively, else float32);
    the library default stays float32, the CLI, the bench and the app default to "auto".
    ``device``: cpu | cuda[:N] | auto; None = ``SPECSCOPE_DEVICE`` or cpu (see ``default_device``)."""
    device = default_device(device)
    dtype = adapters.resolve_dtype(dtype, device)
    kernels = kernels or adapters.kernels_default()
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
            raise adapters.ModelLoadError(f"drafter {drafter!r} is not trained yet ({path} is missing)")
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


def compare(pair: Pair, prompt: str, image=None, spec: DraftSpec = DraftSpec(),
            sampling: SamplingConfig = SamplingConfig(), max_new_tokens: int = 64, warmup: bool = True,
            **kw) -> dict:
    """The same input decoded autoregressively, then speculatively, by the same target."""
    if warmup:  # first calls pay one-off costs (allocator, kernels); keep them out of both timings
        run(pair, prompt, image, spec, sampling, min(8, max_new_tokens), speculative=False, detail=False)
        if pair.drafter is not None:
            run(pair, prompt, image, spec, sampling, min(8, max_new_tokens), detail=False)
    ar = run(pair, prompt, image, spec, sampling, max_new_tokens, speculative=False, **kw)
    sp = run(pair, prompt, image, spec, sampling, max_new_tokens, **kw)
    return {"ar": ar, "spec": sp, "speedup": ar.wall_s / sp.wall_s if sp.wall_s > 0 else 0.0,
            "identical": ar.output == sp.output}


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
