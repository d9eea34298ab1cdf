"""Drafter registry: names the CLI, the app and the benchmark accept (read by one parser,
``parse_drafter`` in core/drafters/names.py).

none | ar                 plain autoregressive decoding (no drafter)
ngram                     prompt / n-gram lookup (training-free)
layerskip[:K]             the target's first K layers + its head (self-speculation)
msd | massv | small-vlm | text-lm  the drafters shipped for the default target (assets/drafters/)
msd:<dir> | <EAGLE dir>   an MSD / EAGLE draft head over the target's features
eagle3:<dir> | <EAGLE-3 dir>  an EAGLE-3 head (speculators layout or SpecForge's;
                          core/drafters/eagle3.py) over three of the target's layers
<Hub id or directory>     a separate small model sharing the target's tokenizer;
                          mode "multimodal" (it sees the image) or "text-only"
package.module:Class      a third-party drafter, constructed as Class(target, **options);
                          it implements the ``Drafter`` protocol (core/drafters/base.py)
"""

from __future__ import annotations

import importlib
import os

from ..adapters import load
from ..errors import InputError, ModelLoadError
from .base import (
    CHOICES,
    DEFAULT_CHAIN,
    DEFAULT_DYNAMIC,
    DraftContext,
    DraftSpec,
    Drafter,
    ModelDrafter,
    assistant_model,
    build_tree,
    draft_dtype,
    spec_for,
    tuned_spec,
)
from .eagle3 import Eagle3Drafter, is_eagle3_dir
from .msd import MSDDrafter, MSDHead as MSDHead, is_msd_dir  # MSDHead: re-exported for trainers
from .names import DrafterName, parse_drafter
from .ngram import NgramDrafter

__all__ = [
    "CHOICES",
    "DraftContext",
    "DraftSpec",
    "Drafter",
    "ModelDrafter",
    "NgramDrafter",
    "assistant_model",
    "build_tree",
    "make_drafter",
    "DrafterName",
    "parse_drafter",
    "check_tokenizers",
    "spec_for",
    "tuned_spec",
    "DEFAULT_CHAIN",
    "DEFAULT_DYNAMIC",
]


def check_tokenizers(target, drafter) -> None:
    """Refuse pairs whose tokenizers map ids to different tokens."""
    tt, td = target.tokenizer, drafter.tokenizer
    n = min(tt.vocab_size, td.vocab_size)
    ids = list(range(n))
    if tt.convert_ids_to_tokens(ids) != td.convert_ids_to_tokens(ids):
        bad = next(i for i, (a, b) in enumerate(zip(tt.convert_ids_to_tokens(ids), td.convert_ids_to_tokens(ids))) if a != b)
        raise ModelLoadError(
            f"drafter {drafter.name!r} uses a different tokenizer than the target "
            f"(token id {bad} differs); speculative decoding needs a shared vocabulary"
        )


def make_drafter(name: str | DrafterName | None, target, dtype=None, mode: str = "multimodal", kernels: str | None = None, **options):
    """Build a drafter for ``target`` from a registry name (see module docstring; read by
    ``parse_drafter``). ``dtype`` overrides a separate draft model's dtype (default:
    ``draft_dtype(target)``)."""
    d = name if isinstance(name, DrafterName) else parse_drafter(name)
    if d is None:
        return None
    if d.kind == "ngram":
        return NgramDrafter(target, **options)
    if d.kind == "layerskip":
        k = options.pop("layers", None) if d.layers is None else d.layers
        total = len(target.text_module().layers)
        k = k or max(1, total // 4)
        return ModelDrafter(target.truncated(k), f"layerskip ({k}/{total} layers)", use_image=True)
    if d.kind == "plugin":
        mod, _, cls = d.ref.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), cls)
        except (ImportError, AttributeError) as e:
            raise InputError(f"cannot import drafter {d.ref!r}: {e}") from None
        return obj(target, **options)
    d.require_trained()
    path = d.ref
    if d.kind == "eagle3" or (d.kind == "model" and is_eagle3_dir(path)):  # before msd: its weights look like one
        try:
            return Eagle3Drafter(target, path, name=f"eagle3 head ({os.path.basename(path.rstrip('/'))})", kernels=kernels)
        except Exception as e:  # missing files, offline Hub, broken checkpoint, wrong target
            raise ModelLoadError(f"cannot load EAGLE-3 head {path!r}: {type(e).__name__}: {e}") from None
    if d.kind == "msd" or is_msd_dir(path):
        try:
            return MSDDrafter(target, path, name=f"msd head ({os.path.basename(path.rstrip('/'))})")
        except Exception as e:  # missing files, offline Hub, wrong layout
            raise ModelLoadError(f"cannot load MSD head {path!r}: {type(e).__name__}: {e}") from None
    if mode not in ("multimodal", "text-only"):
        raise InputError(f"drafter mode must be 'multimodal' or 'text-only', got {mode!r}")
    # fp32 next to a bf16 target on a CPU (one-row draft steps are faster in fp32 there)
    lm = load(path, dtype=dtype or draft_dtype(target), device=str(target.device), kernels=kernels, role="drafter")
    check_tokenizers(target, lm)
    use_image = mode == "multimodal"
    label = f"{path} ({'text-only' if not (use_image and lm.is_multimodal) else 'multimodal'})"
    return ModelDrafter(lm, label, use_image=use_image)
