"""The Run tab's inputs, checked: ``parse_params`` turns the /run fields into ``RunParams`` or
raises ``InputError`` in the page's words."""

from __future__ import annotations

from dataclasses import dataclass

from core.api import CHOICES, DraftSpec, InputError, SamplingConfig, spec_for

from .. import limits
from ..inputs import check_precision, notes_of, read_image, resolve_drafter


@dataclass
class RunParams:
    prompt: str
    image: object
    target: str
    drafter: str | None
    mode: str
    dtype: str
    spec: DraftSpec
    sampling: SamplingConfig
    max_new_tokens: int
    notes: tuple = ()  # shown with the result: a capped value, a missing image

    def meta(self) -> dict:
        return {"temperature": self.sampling.temperature, "prompt": self.prompt, "has_image": self.image is not None, "app": "specscope"}


def parse_params(
    image,
    prompt,
    target,
    drafter,
    custom_drafter,
    mode,
    dtype,
    strategy,
    gamma,
    branching,
    depth,
    top_k,
    budget,
    temperature,
    top_p,
    max_new_tokens,
    seed,
) -> RunParams:
    prompt = limits.check_prompt(prompt)
    target = limits.check_model_id(target or limits.default_target(), "target")
    drafter_name = resolve_drafter(drafter, custom_drafter)
    if mode not in ("multimodal", "text-only"):
        raise InputError(f"drafter mode must be 'multimodal' or 'text-only', got {mode!r}")
    check_precision(dtype)
    if strategy not in CHOICES:
        raise InputError(f"strategy must be one of {', '.join(CHOICES)}, got {strategy!r}")
    gamma = limits.check_int("gamma (draft length)", gamma, 1, 16)
    spec = spec_for(
        strategy,
        None if strategy == "auto" else gamma,  # auto: up to AUTO_CAP, per step
        branching=limits.parse_branching(branching),
        depth=limits.check_int("depth", depth, 1, 12),
        top_k=limits.check_int("top-k (expansions per depth)", top_k, 1, 16),
        budget=limits.check_int("node budget", budget, 1, 256),
    )
    sampling = SamplingConfig(
        temperature=limits.check_float("temperature", temperature, 0.0, 2.0),
        top_p=limits.check_float("top-p", top_p, 0.0, 1.0, lo_open=True),
        seed=limits.check_int("seed", seed, 0, 2**31 - 1),
    )
    max_new, capped = limits.check_max_new(max_new_tokens)
    img = read_image(image)
    return RunParams(prompt, img, target, drafter_name, mode, dtype, spec, sampling, max_new, tuple(notes_of(capped, img)))
