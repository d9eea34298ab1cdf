"""Export a SpecScope draft head for serving engines.

    python -m core export --drafter runs/eagle3-x --format speculators OUT
    python -m core export --drafter <SpecForge dir> --format speculators OUT --target <verifier id>

``speculators``: the layout vLLM (and the speculators library) load for EAGLE-3, written with
every field explicit (norm_before_residual, aux layer ids, target hidden size, the verifier);
``specforge``: SpecForge's names (``midlayer.*``, aux ids as "output of layer i"). The source is
any EAGLE-3 head core/drafters/eagle3.py loads: one SpecScope trained (already in the
speculators layout, with training notes), a speculators checkpoint, or a SpecForge one.
"""

from __future__ import annotations

import json
import os

FORMATS = ("speculators", "specforge")


def target_layers(target: str) -> int:
    """The number of decoder layers of a target (Hub id, directory or 'default'), from its config."""
    from transformers import AutoConfig

    from .paths import resolve_target

    cfg = AutoConfig.from_pretrained(resolve_target(target))
    tc = getattr(cfg, "text_config", None) or cfg
    return int(tc.num_hidden_layers)


def export(
    drafter: str,
    out: str,
    fmt: str = "speculators",
    verifier: str | None = None,
    target: str | None = None,
    speculative_tokens: int | None = None,
    dtype: str = "float32",
) -> dict:
    """Write the head at ``drafter`` into ``out`` in ``fmt``. ``verifier``: the name serving engines
    load as the target (default: the one the head records, else ``target``); ``target``: needed
    when the head names no aux layers (their default depends on the target's layer count);
    ``dtype``: the weights' dtype in ``out`` (bfloat16: half the bytes, what a bf16 target is served
    with; the vocabulary maps stay integer). Returns what was written (format, directory, verifier, aux layer ids)."""
    from .drafters.eagle3 import Eagle3Head, default_aux_layers, is_eagle3_dir

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not os.path.isdir(drafter):
        raise ValueError(f"--drafter {drafter!r} is not a directory")
    if not is_eagle3_dir(drafter):
        raise ValueError(
            f"{drafter!r} holds no EAGLE-3 head (config.json declares neither speculators_model_type "
            "'eagle3' nor a SpecForge Eagle3 architecture); only EAGLE-3 heads export"
        )
    if os.path.abspath(out) == os.path.abspath(drafter):
        raise ValueError("the output directory is the source directory")
    if os.path.exists(os.path.join(out, "config.json")):
        raise ValueError(f"{out!r} already holds a model (config.json); choose an empty directory")
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"--dtype must be float32 or bfloat16, got {dtype!r}")
    import torch

    head = Eagle3Head.load(drafter, dtype=getattr(torch, dtype))
    c = head.config
    if c.aux_layer_ids is None:
        if not target:
            raise ValueError(
                "this head names no aux layer ids; pass --target (its layer count gives vLLM's default "
                "[2, L // 2, L - 3]) so the export can write them explicitly"
            )
        c.aux_layer_ids = default_aux_layers(target_layers(target))
    if verifier:
        c.meta["verifier"] = verifier
    elif not c.meta.get("verifier") and target:
        c.meta["verifier"] = target
    if not c.meta.get("verifier"):
        raise ValueError(
            "the head records no verifier (target model); pass --verifier NAME (the Hub id serving engines load as the target)"
        )
    if c.meta.get("verifier") == "default" or (target == "default" and c.meta["verifier"] == target):
        from .paths import DEFAULT_TARGET

        c.meta["verifier"] = str(DEFAULT_TARGET)
    if speculative_tokens is not None:
        if not 1 <= speculative_tokens <= 64:
            raise ValueError(f"--speculative-tokens must be in [1, 64], got {speculative_tokens}")
        c.meta["speculative_tokens"] = speculative_tokens
    head.save(out, fmt=fmt, extra={"exported_from": os.path.abspath(drafter)})
    with open(os.path.join(out, "config.json")) as f:
        written = json.load(f)
    return {
        "format": fmt,
        "out": out,
        "verifier": c.meta["verifier"],
        "aux_layer_ids": list(c.aux_layer_ids),
        "draft_vocab_size": c.draft_vocab_size,
        "norm_before_residual": c.norm_before_residual,
        "dtype": dtype,
        "keys": sorted(written),
    }
