"""Dtype and device policy: which dtype and device a model runs in, and the operator's kernel choice.

resolve_device("auto")            # "cuda" where a CUDA GPU is visible, else "cpu"
resolve_dtype("auto", device)     # "bfloat16" where a plain step measured faster in it, else "float32"
kernels_default()                 # SPECSCOPE_KERNELS, checked (default "auto")
compile_default()                 # SPECSCOPE_COMPILE: auto (default) or off
"""

from __future__ import annotations

import copy
import functools
import os

import torch

from .errors import InputError

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def fast_bf16(device: str = "cpu") -> bool:
    """Is decoding faster in bfloat16 than in float32 on this device? CUDA: ``is_bf16_supported``.
    CPU: measured (``bf16_step_ratio``: a plain step plus a 16-row verify), not read from the CPU's
    flags: an emulated bf16 wins a memory-bound one-row step and loses the many-row verify."""
    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bf16_step_ratio() < BF16_WINS


BF16_WINS = 0.9  # bf16 must be clearly faster: near a tie float32 keeps its precision


@functools.lru_cache(maxsize=1)
def bf16_step_ratio() -> float:
    """Seconds of a one-token decoding step plus a 16-token verify forward, in bfloat16 over float32
    on this CPU (what plain and speculative decoding spend their time on): a small random
    Llama-shaped decoder (two layers of a 1.5B model's widths, eager attention, a 64-token cache),
    both dtypes alternated, median of 7. Measured once per CPU, thread count and torch (about a
    second), then read from the tuning file (key "dtype")."""
    import json
    from .machine import cpu_name, tuning_path

    key = f"dtype/2|{cpu_name()}|threads={torch.get_num_threads()}|torch={torch.__version__}"
    path = tuning_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    hit = data.get("dtype", {}).get(key)
    if isinstance(hit, dict) and "ratio" in hit:
        return float(hit["ratio"])
    times = _step_times()
    ratio = times["bfloat16"] / times["float32"]
    data.setdefault("dtype", {})[key] = {"ratio": round(ratio, 4), "seconds": {k: round(v, 6) for k, v in times.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))
    except OSError:
        pass
    return ratio


@torch.inference_mode()
def _step_times(reps: int = 7) -> dict[str, float]:
    import statistics
    import time
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=2,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=4096,
        attn_implementation="eager",
    )
    from transformers.initialization import no_init_weights

    g = torch.Generator().manual_seed(0)
    with no_init_weights():  # random weights drawn below, not the slow init
        base = LlamaForCausalLM(cfg).eval()
    for p in base.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.02 + (1.0 if p.dim() == 1 else 0.0)
    models = {"float32": base, "bfloat16": copy.deepcopy(base).to(torch.bfloat16)}
    ids = torch.randint(0, cfg.vocab_size, (1, 80))
    step = {}
    for name, m in models.items():
        cache = DynamicCache()
        m(input_ids=ids[:, :64], past_key_values=cache, use_cache=True)

        def one(m=m, cache=cache):
            m(input_ids=ids[:, 64:65], past_key_values=cache, use_cache=True)
            cache.crop(-1)
            m(input_ids=ids[:, 64:80], past_key_values=cache, use_cache=True)
            cache.crop(-16)

        one()
        step[name] = one
    out: dict[str, list[float]] = {k: [] for k in step}
    for _ in range(reps):
        for name, fn in step.items():
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in out.items()}


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str = "cpu") -> str:
    """A dtype name; ``"auto"`` is bfloat16 where a plain decoding step measured faster in it on this
    device (``fast_bf16``), else float32. Losslessness is always against the target's own greedy
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
            raise InputError("CUDA was requested but this machine has no CUDA GPU; use --device cpu (or SPECSCOPE_DEVICE=cpu)")
        if ":" in d and int(d[5:]) >= torch.cuda.device_count():
            raise InputError(f"no CUDA device {d!r}: this machine has {torch.cuda.device_count()} (cuda:0 .. cuda:N-1)")
        return d
    raise InputError(f"unknown device {device!r}; use one of {', '.join(DEVICES)} (or cuda:N)")


def kernels_default() -> str:
    """The operator's ``SPECSCOPE_KERNELS`` (one of KERNELS; bf16 / rowbf16 / int8 only for drafters),
    default auto."""
    k = os.environ.get("SPECSCOPE_KERNELS", "").strip().lower() or "auto"
    if k not in KERNELS:
        raise InputError(f"SPECSCOPE_KERNELS={k!r}: use one of {', '.join(KERNELS)}")
    return k


KERNELS = ("auto", "stock", "dense", "onednn", "packed", "rowdot", "rowil", "bf16", "rowbf16", "int8")
COMPILE = ("auto", "off")
DRAFT_WEIGHTS = ("fastest", "own")
HEAD_SCREEN = ("auto", "on", "off")


def head_screen_default() -> str:
    """The operator's ``SPECSCOPE_HEAD_SCREEN``: "auto" (default) lets greedy steps of a compiled target
    take the lm_head through its int8 screen at the row counts where that measured cheaper
    (core/screen.py: the same tokens and margins as the full head); "on": at every row count it can
    take; "off": never."""
    h = os.environ.get("SPECSCOPE_HEAD_SCREEN", "").strip().lower() or "auto"
    if h not in HEAD_SCREEN:
        raise InputError(f"SPECSCOPE_HEAD_SCREEN={h!r}: use one of {', '.join(HEAD_SCREEN)}")
    return h


def draft_weights_default() -> str:
    """The operator's ``SPECSCOPE_DRAFT_WEIGHTS``: "fastest" (default) lets a drafter's products run on
    bfloat16 or int8 copies of its weights where they measure faster (``core.kernels``' lossy paths, the
    compiled forward's i8 products); "own" keeps it on its own weights. The output is the target's
    either way; the acceptance is not: the real 0.5B drafter accepted 0.818 / 0.682 / 0.552 of its
    chain-of-3 drafts on its own weights and 0.761 / 0.626 / 0.497 on int8 copies, which cost a quarter
    of the step (docs/results.md, thirty-second session). A researcher measuring a drafter's acceptance
    asks for "own"."""
    w = os.environ.get("SPECSCOPE_DRAFT_WEIGHTS", "").strip().lower() or "fastest"
    if w not in DRAFT_WEIGHTS:
        raise InputError(f"SPECSCOPE_DRAFT_WEIGHTS={w!r}: use one of {', '.join(DRAFT_WEIGHTS)}")
    return w


def compile_default() -> str:
    """The operator's ``SPECSCOPE_COMPILE``: auto (default: a target's compiled forward, core/compiled.py,
    where it is eligible and measured exact and faster) or off."""
    c = os.environ.get("SPECSCOPE_COMPILE", "").strip().lower() or "auto"
    if c not in COMPILE:
        raise InputError(f"SPECSCOPE_COMPILE={c!r}: use one of {', '.join(COMPILE)}")
    return c


def threads_from_env() -> None:
    """``SPECSCOPE_THREADS``: the operator's torch thread count (unset: torch's default)."""
    n = os.environ.get("SPECSCOPE_THREADS")
    if n:
        torch.set_num_threads(int(n))
