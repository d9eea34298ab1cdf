"""Where the project's files are: the repository root, the shipped assets, the embedded default
target and the drafters trained for it (tools/train/*)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelLoadError

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
DEFAULT_TARGET = ASSETS / "target"

# Drafters shipped for the embedded default target (trained by tools/train/*).
SHIPPED_DRAFTERS = {
    "msd": ASSETS / "drafters" / "msd",
    "massv": ASSETS / "drafters" / "massv",
    "small-vlm": ASSETS / "drafters" / "small_vlm",
    "text-lm": ASSETS / "drafters" / "text_lm",
    "eagle3": ASSETS / "drafters" / "eagle3",  # EAGLE-3 head trained here (assets/drafters/eagle3/TRAINING.md)
}


def resolve_target(name: str | None) -> str:
    """A target name -> what ``adapters.load`` takes: "default" (or empty) is the embedded model."""
    if not name or name == "default":
        if not (DEFAULT_TARGET / "config.json").exists():
            raise ModelLoadError(
                "the embedded default model is missing (assets/target); train it with "
                "`python -m tools.train.target --out assets/target` or pass --target"
            )
        return str(DEFAULT_TARGET)
    return local(name)


def local(ref: str) -> str:
    """A folder given as ``~/...`` with the home directory put in (a shell leaves the ``~`` of
    ``a,~/b`` alone, and transformers would read it as a Hub id); any other name unchanged."""
    return os.path.expanduser(ref) if ref.startswith("~") else ref
