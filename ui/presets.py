"""Preset target / drafter pairs offered by the app.

The embedded default runs offline on a CPU. The others are real public model pairs
that need the Hugging Face Hub (or a local cache) and a lot more memory; choosing one
on a machine that cannot load it shows a clear message and the app keeps serving the
default.
"""

from __future__ import annotations

from dataclasses import dataclass

import os

from core.api import ASSETS, SHIPPED_DRAFTERS, InputError, default_device, resolve_dtype

from . import limits

# A head shipped for a real target, not the embedded one (assets/drafters/eagle3_coder/TRAINING.md)
CODER_HEAD = ASSETS / "drafters" / "eagle3_coder"

# Shipped drafters for the default target, best first (used when one is trained).
DEFAULT_DRAFTER_ORDER = ("msd", "small-vlm", "massv", "text-lm")

# Drafter dropdown: (label, value). Shipped drafters are trained by tools/train/* into assets/drafters/.
DRAFTER_LABELS = {
    "none": "none: plain autoregressive decoding",
    "ngram": "n-gram: prompt lookup (training-free)",
    "layerskip": "LayerSkip: the target's first layers",
    "msd": "MSD: EAGLE-style head, decoupled image tokens",
    "eagle3": "EAGLE-3: a head over three target layers",
    "massv": "MASSV: small LM + target's vision encoder",
    "small-vlm": "small VLM: a complete little VLM",
    "text-lm": "text LM: small language model, no image",
    "custom": "custom: Hub id or model folder below",
}


def shipped_available(name: str) -> bool:
    path = SHIPPED_DRAFTERS.get(name)
    return path is not None and path.exists()


def drafter_choices() -> list[tuple[str, str]]:
    out = []
    for key, label in DRAFTER_LABELS.items():
        if key in SHIPPED_DRAFTERS and not shipped_available(key):
            label += " (not trained yet)"
        out.append((label, key))
    return out


def default_drafter() -> str:
    """The best trained drafter of the embedded target; LayerSkip for any other default target."""
    if limits.default_target() != "default":
        return "layerskip"
    for name in DEFAULT_DRAFTER_ORDER:
        if shipped_available(name):
            return name
    return "layerskip"


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    target: str
    drafter: str  # a registry name or a Hub id
    mode: str = "multimodal"  # for separate drafter models: does the drafter see the image?
    dtype: str = "float32"
    strategy: str = "chain"
    approx_gb: float = 0.0  # weights in memory at ``dtype`` (target + drafter)
    note: str = ""

    @property
    def hub(self) -> bool:
        return "/" in self.target and not self.target.startswith(("/", "."))


def auto_dtype() -> str:
    """The app's default precision: bfloat16 where the device the models run on (SPECSCOPE_DEVICE,
    CPU by default) computes it natively. A bad SPECSCOPE_DEVICE must not break building the UI:
    the load itself reports it."""
    try:
        return resolve_dtype("auto", default_device())
    except InputError:
        return resolve_dtype("auto")


def presets() -> list[Preset]:
    """Computed on call: the default depends on the environment and on trained drafters."""
    return [
        Preset(
            "default",
            "SpecScope default (embedded model, offline)",
            limits.default_target(),
            default_drafter(),
            strategy="dynamic",
            dtype=auto_dtype(),
            note="A small LLaVA-shaped model trained by the project on 128 px scenes of coloured shapes. Runs anywhere, no download.",
        ),
        Preset(
            "smolvlm-256m",
            "SmolVLM 2.2B  ←  SmolVLM-256M drafter (multimodal)",
            "HuggingFaceTB/SmolVLM-Instruct",
            "HuggingFaceTB/SmolVLM-256M-Instruct",
            dtype="bfloat16",
            approx_gb=5.0,
            note="Same family, both models see the image. Needs the Hub and ~5 GB of memory.",
        ),
        Preset(
            "smolvlm-500m",
            "SmolVLM 2.2B  ←  SmolVLM-500M drafter (multimodal)",
            "HuggingFaceTB/SmolVLM-Instruct",
            "HuggingFaceTB/SmolVLM-500M-Instruct",
            dtype="bfloat16",
            approx_gb=5.5,
            note="A larger drafter: more accepted tokens, but each draft costs more.",
        ),
        Preset(
            "llava-68m",
            "LLaVA-1.5-7B  ←  LLaMA-68M drafter (text-only)",
            "llava-hf/llava-1.5-7b-hf",
            "JackFram/llama-68m",
            mode="text-only",
            dtype="bfloat16",
            approx_gb=14.5,
            note="The classic setup of Gagrani et al. / Spec-LLaVA: a tiny text-only LLaMA drafts "
            "for LLaVA. Needs the Hub and ~15 GB; a GPU is strongly recommended.",
        ),
        Preset(
            "llava-160m",
            "LLaVA-1.5-7B  ←  LLaMA-160M drafter (text-only)",
            "llava-hf/llava-1.5-7b-hf",
            "JackFram/llama-160m",
            mode="text-only",
            dtype="bfloat16",
            approx_gb=14.8,
            note="A bigger text-only drafter for LLaVA-1.5-7B.",
        ),
        Preset(
            "qwen-3b",
            "Qwen2.5-VL-7B  ←  Qwen2.5-VL-3B drafter (multimodal)",
            "Qwen/Qwen2.5-VL-7B-Instruct",
            "Qwen/Qwen2.5-VL-3B-Instruct",
            dtype="bfloat16",
            approx_gb=23.0,
            note="A same-family VLM drafter (M-RoPE positions). ~23 GB: GPU territory.",
        ),
        Preset(
            "qwen-0.5b",
            "Qwen2.5-VL-7B  ←  Qwen2.5-0.5B drafter (text-only)",
            "Qwen/Qwen2.5-VL-7B-Instruct",
            "Qwen/Qwen2.5-0.5B-Instruct",
            mode="text-only",
            dtype="bfloat16",
            approx_gb=17.0,
            note="The MASSV baseline: a small text-only LM of the same tokenizer family.",
        ),
        Preset(
            "llava16-msd",
            "LLaVA-1.6-7B  ←  released MSD head (EAGLE layout)",
            "llava-hf/llava-v1.6-vicuna-7b-hf",
            "msd:lucylyn/MSD-LLaVA1.6-7B",
            strategy="dynamic",
            dtype="bfloat16",
            approx_gb=15.5,
            note="The MSD paper's own drafter: one decoder layer over LLaVA-1.6's features, image "
            "tokens decoupled. Needs the Hub and ~16 GB; a GPU is strongly recommended.",
        ),
        Preset(
            "qwen-coder-eagle3",
            "Qwen2.5-Coder-1.5B  ←  EAGLE-3 head trained here",
            "Qwen/Qwen2.5-Coder-1.5B-Instruct",
            f"eagle3:{CODER_HEAD}",
            strategy="auto",
            dtype=auto_dtype(),
            approx_gb=3.5,
            note="A one-layer EAGLE-3 head shipped in assets/, trained on this project's CPUs on the target's own answers "
            "to prompts built from installed packages' code. Needs the target from the Hub, or offline: "
            "`python -m tools.models real-pair` and Custom with its folder.",
        ),
    ]


def get(key: str) -> Preset:
    for p in presets():
        if p.key == key or p.label == key:
            return p
    raise KeyError(key)


def choices() -> list[tuple[str, str]]:
    return [(p.label, p.key) for p in presets()] + [("Custom: type the model ids below", "custom")]


def check_loadable(p: Preset) -> str | None:
    """A quick, no-download check; a message when this preset cannot run here, else None."""
    if not p.hub:
        return None
    for repo in (p.target, p.drafter.removeprefix("msd:").removeprefix("eagle3:")):
        if os.path.isdir(repo):  # shipped in assets/
            continue
        if "/" in repo and not (limits.in_local_cache(repo) or limits.hub_reachable()):
            return (
                f"**{p.label}** needs {repo!r} from the Hugging Face Hub, which is unreachable "
                "from this machine and not in its cache. Staying on the embedded default model."
            )
    avail = limits.memory_available_gb()
    if avail is not None and p.approx_gb > 0.9 * avail:
        return (
            f"**{p.label}** needs about {p.approx_gb:.0f} GB of memory; this machine has "
            f"{avail:.0f} GB available. Staying on the embedded default model."
        )
    return None
