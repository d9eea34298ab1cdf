"""The inputs every tab shares: the one set of defaults, the example images, the image box, and
the checks of the fields several tabs have (drafter, precision, prompt and length).

Checks raise ``InputError`` in the page's words; handlers show it through ``messages.guarded``.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass

import gradio as gr

from core.api import ASSETS, ROOT, SHIPPED_DRAFTERS, DraftSpec, InputError, load_image, parse_drafter, tuned_spec

from . import limits
from .messages import plain_words

EXAMPLES_DIR = ASSETS / "examples"
NO_IMAGE = "No image: answering from the text only."
PRECISIONS = ("float32", "bfloat16")


# ====================================================================== one set of defaults
@dataclass(frozen=True)
class Defaults:
    """The defaults of every tab (Run, Compare, Teach), from one place."""

    strategy: str = "auto"  # Run's draft shape; Compare / Teach offer fixed shapes of gamma
    gamma: int = 6  # chain length (DraftSpec's default; a tuned value wins)
    max_new_tokens: int = 96  # the examples' longest answer (73 tokens) fits, with room
    repeats: int = 3  # timing rounds (plain and speculative, alternating)
    temperature: float = 0.0


def defaults() -> Defaults:
    from . import presets

    chain = tuned_spec(limits.default_target(), presets.default_drafter(), "chain")
    return Defaults(gamma=chain.gamma)


def default_shapes() -> tuple[DraftSpec, DraftSpec]:
    """(chain, dynamic) defaults: what ``python -m tools.tune`` measured fastest on this machine for
    the default pair, else DraftSpec's defaults: gamma 6 and depth 8 / top-4 / 20 nodes (sized
    for CPUs: a verify forward costs more per token there than on a GPU)."""
    from . import presets

    tgt, d = limits.default_target(), presets.default_drafter()
    return tuned_spec(tgt, d, "chain"), tuned_spec(tgt, d, "dynamic")


# ====================================================================== examples and the image box
def load_examples() -> list[dict]:
    try:
        data = json.loads((EXAMPLES_DIR / "examples.json").read_text())
    except (OSError, ValueError):
        return []
    out = []
    for ex in data.get("examples", []):
        path = EXAMPLES_DIR / str(ex.get("file", ""))
        if path.is_file() and ex.get("prompt"):
            out.append({**ex, "path": str(path)})
    return out


def _raw_path_preprocess(self, payload):
    if payload is None:
        return None
    path = getattr(payload, "path", None)
    if path:
        return str(path)
    try:
        return gr.Image.preprocess(self, payload)
    except Exception:
        raise gr.Error("cannot read this image") from None


def SafeImage(**kw) -> gr.Image:
    """A ``gr.Image`` that hands the raw upload path to the handler, so a corrupt, huge or odd
    file is judged by ``core.images.load_image`` (a clear message) instead of failing inside
    Gradio's own preprocessing (a generic error). Patched per instance: a subclass would make
    Gradio write a .pyi stub next to this file."""
    img = gr.Image(**kw)
    img.preprocess = types.MethodType(_raw_path_preprocess, img)
    return img


def read_image(path):
    """The handler side of SafeImage: None (no image) or an RGB PIL image, else InputError (in
    the page's words: no library names)."""
    if path is None or path == "":
        return None
    if isinstance(path, dict):  # {"path": ...} from some clients
        path = path.get("path")
    try:
        if hasattr(path, "size") and hasattr(path, "mode"):
            return load_image(path)
        return load_image(str(path))
    except InputError as e:
        raise InputError(plain_words(str(e))) from None


# ====================================================================== fields several tabs share
def resolve_drafter(drafter, custom_drafter=None) -> str | None:
    """The drafter field (and the custom one when it says "custom") checked: a drafter name or
    path, None for plain decoding (``parse_drafter``'s "none" / "ar")."""
    choice = (drafter or "none").strip() if isinstance(drafter, str) else "none"
    name = limits.check_model_id(custom_drafter if choice == "custom" else choice, "drafter")
    return None if parse_drafter(name) is None else name


def check_precision(dtype) -> str:
    if dtype not in PRECISIONS:
        raise InputError(f"precision must be float32 or bfloat16, got {dtype!r}")
    return dtype


def checked_inputs(prompt, target, dtype, max_new_tokens, temperature):
    """The inputs Compare and its replay sweep share, checked: (prompt, target, max new tokens,
    the capped note or "", temperature)."""
    prompt = limits.check_prompt(prompt)
    target = limits.check_model_id(target or limits.default_target(), "target")
    check_precision(dtype)
    max_new, capped = limits.check_max_new(max_new_tokens)
    return prompt, target, max_new, capped, limits.check_float("temperature", temperature, 0.0, 2.0)


def notes_of(capped: str, image) -> list[str]:
    """The notes shown with a result: a capped length, a missing image."""
    return [n for n in (capped[0].upper() + capped[1:] + "." if capped else "", NO_IMAGE if image is None else "") if n]


def drafter_display(name: str | None, pair) -> str:
    """A short drafter name for the page: the registry name rather than a local path."""
    full = getattr(pair.drafter, "name", None) or str(name)
    if name in SHIPPED_DRAFTERS or ("/" in full and full.split(" ")[0].startswith(str(ROOT))):
        return f"the {name} drafter"
    return full.rsplit("/", 1)[-1] if full.startswith("/") else full


def shape_text(spec: DraftSpec) -> str:
    if spec.adaptive:
        return f"auto: a chain of 0-{spec.gamma} tokens per step, sized by the measured costs"
    return {
        "chain": f"chain, γ={spec.gamma}",
        "tree": "static tree " + ",".join(map(str, spec.branching)),
        "dynamic": f"dynamic tree, depth {spec.depth}, top-{spec.top_k}, {spec.budget} nodes",
    }[spec.strategy]
