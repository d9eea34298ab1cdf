"""The model cache: targets and drafters are loaded once per process and shared by every
caller (CLI, app, bench), the least recently used target dropped first with its drafters.

    pair = load_pair("default", "msd")          # Pair(target adapter, drafter, names)
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from . import adapters, compiled, device as devices
from .drafters import make_drafter, parse_drafter
from .paths import resolve_target
from .policy import AutoPolicy
from .sampling import SamplingConfig


@dataclass
class Pair:
    target: adapters.HFAdapter
    drafter: object | None
    target_name: str
    drafter_name: str | None


_cache: OrderedDict[tuple, object] = OrderedDict()
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
        gone = _cache.pop(old)
        tid = id(gone)
        for k in [k for k in _cache if k[0] == "drafter" and k[1] == tid]:
            del _cache[k]
        targets.remove(old)
        if _graph(gone) and not any(_graph(_cache[k]) for k in targets):
            compiled.release()  # dynamo's cache would keep the dropped target's compiled graph alive


def _graph(target) -> bool:
    """Has this target's compiled forward been compiled (dynamo's cache holds it)?"""
    return getattr(getattr(target, "compiled", None), "_fn", None) is not None


def default_device(device: str | None = None) -> str:
    """``device``, or when None the operator's ``SPECSCOPE_DEVICE`` (unset: "cpu"), resolved by
    ``device.resolve_device`` ("auto" -> cuda if there is a CUDA GPU). CPU unless asked."""
    if device is None:
        device = os.environ.get("SPECSCOPE_DEVICE", "").strip() or "cpu"
    return devices.resolve_device(device)


def load_target(
    name: str | None, dtype: str = "float32", trust_remote_code: bool = False, device: str | None = None, kernels: str | None = None
) -> adapters.HFAdapter:
    """``dtype`` may be "auto" (bfloat16 where the CPU/GPU computes it natively, else float32);
    the library default stays float32, the CLI, the bench and the app default to "auto".
    ``device``: cpu | cuda[:N] | auto; None = ``SPECSCOPE_DEVICE`` or cpu (see ``default_device``)."""
    device = default_device(device)
    dtype = devices.resolve_dtype(dtype, device)
    kernels = kernels or devices.kernels_default()
    key = ("target", resolve_target(name), dtype, device, kernels)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = adapters.load(key[1], dtype=dtype, device=device, trust_remote_code=trust_remote_code, kernels=kernels)
        _cache.move_to_end(key)
        _evict(key)
        return _cache[key]


def load_pair(
    target: str | None,
    drafter: str | None = None,
    dtype: str = "float32",
    mode: str = "multimodal",
    trust_remote_code: bool = False,
    device: str | None = None,
    kernels: str | None = None,
    **options,
) -> Pair:
    """The target (cached per name, dtype and device) and a drafter for it; drafters run on the
    target's device (``drafters.base.draft_dtype``: fp32 on a CPU, the target's dtype on a GPU)."""
    tgt = load_target(target, dtype, trust_remote_code, device, kernels)
    ref = parse_drafter(drafter)
    d = None
    if ref is not None:
        ref.require_trained()
        key = ("drafter", id(tgt), ref.key, mode, devices.draft_weights_default(), tuple(sorted(options.items())))
        with _cache_lock:
            if key not in _cache:
                # drafter models pick their own dtype (drafters.base.draft_dtype: fp32 on a CPU)
                _cache[key] = make_drafter(ref, tgt, mode=mode, kernels=tgt.kernels.get("requested"), **options)
            d = _cache[key]
    return Pair(tgt, d, resolve_target(target), drafter)


_policies: dict = {}


def release() -> None:
    """Drop every cached model and policy (their memory returns once no caller holds them)."""
    with _cache_lock:
        _cache.clear()
        _policies.clear()
        compiled.release()  # compiled forwards hold their models' packed weights through dynamo's cache
    gc.collect()
    _trim_heap()


def _trim_heap() -> None:
    """Hand freed heap pages back to the system (glibc keeps them for reuse; measured: 1.5 GB of a
    released 0.5B target's 8 GB), so a process loaded next (the bench's vLLM peer) finds them."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def policy_for(pair: Pair, sampling: SamplingConfig):
    """The adaptive-length policy of this target + drafter (one for greedy, one for sampling): its
    cost model and acceptance statistics carry over from run to run, like a warm cache."""
    key = (id(pair.target), id(pair.drafter), sampling.greedy)
    with _cache_lock:
        if key not in _policies:
            _policies[key] = AutoPolicy.measured(pair.target)
        return _policies[key]
