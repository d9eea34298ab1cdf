"""Dtype and device policy: which dtype and device a model runs in, and the operator's kernel choice.

    resolve_device("auto")            # "cuda" where a CUDA GPU is visible, else "cpu"
    resolve_dtype("auto", device)     # "bfloat16" where the device computes it fast, else "float32"
    kernels_default()                 # SPECSCOPE_KERNELS, checked (default "auto")
"""
from __future__ import annotations

import functools
import os

import torch

from .errors import InputError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def fast_bf16(device: str = "cpu") -> bool:
    """Does this device multiply bf16 matrices natively (so bf16 is faster, not emulated)?
    CUDA: ``is_bf16_supported``; CPU: the avx512_bf16 / amx_bf16 instructions (Linux flags);
    without them bf16 is emulated and slower than float32."""
    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return _cpu_has_bf16()


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str = "cpu") -> str:
    """A dtype name; ``"auto"`` is bfloat16 where the device computes it fast (``fast_bf16``),
    else float32. Losslessness is always against the target's own greedy
    decoding *in the same dtype*."""
    if isinstance(dtype, torch.dtype):
        return str(dtype).replace("torch.", "")
    if dtype == "auto":
        return "bfloat16" if fast_bf16(device) else "float32"
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; use auto or one of {sorted(DTYPES)}")
    return str(DTYPES[dtype]).replace("torch.", "")


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | None = "auto") -> str:
    """A device name: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. ``"auto"`` (or None) is ``"cuda"`` when
    a CUDA GPU is visible, else ``"cpu"``. Asking for CUDA on a machine without one is a user
    error (InputError), not a crash deep inside ``model.to``."""
    d = "auto" if device is None else str(device).strip().lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d == "cpu":
        return "cpu"
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        if not torch.cuda.is_available():
            raise InputError("CUDA was requested but this machine has no CUDA GPU; use --device cpu "
                             "(or SPECSCOPE_DEVICE=cpu)")
        if ":" in d and int(d[5:]) >= torch.cuda.device_count():
            raise InputError(f"no CUDA device {d!r}: this machine has {torch.cuda.device_count()} "
                             "(cuda:0 .. cuda:N-1)")
        return d
    raise InputError(f"unknown device {device!r}; use one of {', '.join(DEVICES)} (or cuda:N)")


def kernels_default() -> str:
    """The operator's ``SPECSCOPE_KERNELS`` (one of KERNELS; bf16 / int8 only for drafters),
    default auto."""
    k = os.environ.get("SPECSCOPE_KERNELS", "").strip().lower() or "auto"
    if k not in KERNELS:
        raise InputError(f"SPECSCOPE_KERNELS={k!r}: use one of {', '.join(KERNELS)}")
    return k


KERNELS = ("auto", "stock", "dense", "onednn", "bf16", "int8")


def threads_from_env() -> None:
    """``SPECSCOPE_THREADS``: the operator's torch thread count (unset: torch's default)."""
    n = os.environ.get("SPECSCOPE_THREADS")
    if n:
        torch.set_num_threads(int(n))
