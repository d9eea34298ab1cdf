"""Loading a target or drafter by Hub id or folder: config -> family -> model, processor and
tokenizer -> adapter, on a device, in a dtype, with the measured product paths (core.kernels)."""

from __future__ import annotations

import os

import torch

from ..device import DTYPES, compile_default, draft_weights_default, kernels_default, resolve_device, resolve_dtype
from ..errors import InputError, ModelLoadError, first_line
from .base import HFAdapter
from .families import FAMILIES, PROCESSOR_FALLBACKS


def trust_remote_code_allowed() -> bool:
    return os.environ.get("SPECSCOPE_TRUST_REMOTE_CODE", "") == "1"


def load(
    name_or_path: str,
    dtype: str | torch.dtype = "float32",
    device: str = "cpu",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    kernels: str | None = None,
    role: str = "target",
) -> HFAdapter:
    """Load a target or drafter by Hub id or local directory, through ``from_pretrained``.
    ``device``: cpu (default), cuda[:N] or auto (see ``resolve_device``). ``kernels``: auto
    (default: each linear layer's product path measured fastest on this CPU for ``role``,
    ``core.kernels``), stock (transformers as loaded), or one path forced everywhere."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    if trust_remote_code and not trust_remote_code_allowed():
        raise ModelLoadError("trust_remote_code is disabled; the operator can enable it with SPECSCOPE_TRUST_REMOTE_CODE=1")
    device = resolve_device(device)
    if dtype == "auto":
        dtype = resolve_dtype(dtype, device)
    torch_dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except Exception as e:  # unknown id, offline, missing files, bad json
        raise ModelLoadError(f"cannot load model config for {name_or_path!r}: {first_line(e)}") from None
    mtype = getattr(config, "model_type", "")
    kw: dict = dict(dtype=torch_dtype, trust_remote_code=trust_remote_code)
    if device_map:
        kw["device_map"] = device_map
    try:
        if mtype in FAMILIES:
            model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kw)
            processor = _load_processor(name_or_path, mtype, trust_remote_code)
            tokenizer = getattr(processor, "tokenizer", None) or AutoTokenizer.from_pretrained(name_or_path)
            cls = FAMILIES[mtype]
        else:
            model = AutoModelForCausalLM.from_pretrained(name_or_path, **kw)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
            processor, cls = None, HFAdapter
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"cannot load {name_or_path!r} ({mtype or 'unknown type'}): {first_line(e)}") from None
    if not device_map:
        model.to(device)
    kernels = kernels or kernels_default()
    choice = {"role": role, "paths": "stock"}
    adapter = cls(model, tokenizer, processor, name=str(name_or_path))
    adapter.role = role
    if kernels != "stock" and compile_default() == "auto" and adapter.device.type == "cpu" and not adapter.is_multimodal:
        from ..compiled import CompiledDecoder

        # compiled and chosen later (HFAdapter.settle_path); a drafter's may round its weights (int8)
        # unless the operator keeps drafters on their own weights (SPECSCOPE_DRAFT_WEIGHTS=own)
        adapter.compiled = CompiledDecoder.build(model, lossy=role == "drafter" and draft_weights_default() == "fastest")
        # (built first: it keeps the memory its compile will take from the packed copies below)
    if kernels != "stock":
        from .. import kernels as K

        try:
            choice = K.accelerate(model, role, force=None if kernels == "auto" else kernels, probe=adapter.probe)
        except ValueError as e:
            if adapter.compiled is not None:
                adapter.compiled._give_back()
            raise InputError(str(e)) from None
    adapter.kernels = dict(choice, requested=kernels)
    return adapter


def _load_processor(name_or_path: str, model_type: str, trust_remote_code: bool):
    from transformers import AutoProcessor

    loader = PROCESSOR_FALLBACKS.get(model_type)
    try:
        return AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except Exception as e:
        if loader is None:
            raise ModelLoadError(f"cannot load the processor of {name_or_path!r}: {first_line(e)}") from None
        return loader(name_or_path)
