"""The one parser of drafter names (the CLI, the benchmark, the model cache and ``make_drafter``
read a name through it; the registry is listed in core/drafters/__init__.py).

    parse_drafter("ar")            -> None (plain decoding; also None, "", "none")
    parse_drafter("layerskip:2")   -> DrafterName("layerskip", "layerskip:2", layers=2)
    parse_drafter("msd")           -> DrafterName("model", "msd", ref=".../assets/drafters/msd", shipped="msd")
    parse_drafter("msd:owner/h")   -> DrafterName("msd", "msd:owner/h", ref="owner/h")
    parse_drafter("pkg.mod:Cls")   -> DrafterName("plugin", "pkg.mod:Cls", ref="pkg.mod:Cls")

Parsing reads no model: whether a folder holds an EAGLE-3 head, an MSD head or a whole model
("model" below) is decided by its files when the drafter is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, ModelLoadError
from ..paths import SHIPPED_DRAFTERS, local

NO_DRAFTER = ("", "none", "ar")  # plain autoregressive decoding
NGRAM = ("ngram", "prompt-lookup", "prompt_lookup")
KINDS = ("ngram", "layerskip", "eagle3", "msd", "plugin", "model")


@dataclass(frozen=True)
class DrafterName:
    """A parsed drafter name. ``kind``: ngram | layerskip | eagle3 | msd (a head, by prefix) |
    plugin (``module:Class``) | model (a folder or Hub id: a head or a small model, told apart
    by its files). ``ref``: the folder / Hub id / ``module:Class`` to load (a shipped name: its
    folder under assets/drafters). ``layers``: layerskip's K. ``shipped``: the shipped name."""

    kind: str
    given: str
    ref: str = ""
    layers: int | None = None
    shipped: str | None = None

    @property
    def key(self) -> tuple:
        """What identifies the drafter built from it (the model cache's key)."""
        return (self.kind, self.ref, self.layers)

    def require_trained(self) -> DrafterName:
        """A shipped drafter must have been trained (its folder exists); returns self."""
        if self.shipped and not Path(self.ref).exists():
            raise ModelLoadError(f"drafter {self.shipped!r} is not trained yet ({self.ref} is missing)")
        return self


def is_plugin(name: str) -> bool:
    """``package.module:Class`` rather than a path or a Hub id (``owner/name``)."""
    head = name.split(":", 1)[0]
    return ":" in name and not name.startswith(("/", ".", "~")) and "/" not in head and "\\" not in head and not os.path.exists(name)


def parse_drafter(name) -> DrafterName | None:
    """Read a drafter name (see the module docstring); None means no drafter. A malformed name
    raises ``InputError`` with the message the user sees."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise InputError(f"a drafter name is a string, got {type(name).__name__}")
    given = name.strip()
    low = given.lower()
    if low in NO_DRAFTER:
        return None
    if low in NGRAM:
        return DrafterName("ngram", given)
    if low == "layerskip" or low.startswith("layerskip:"):
        k = low.partition(":")[2]
        if not k:
            return DrafterName("layerskip", given)
        if not k.isdigit() or int(k) < 1:
            raise InputError(f"layerskip takes a layer count, e.g. layerskip:2, got {given!r}")
        return DrafterName("layerskip", given, layers=int(k))
    if given in SHIPPED_DRAFTERS:
        return DrafterName("model", given, ref=str(SHIPPED_DRAFTERS[given]), shipped=given)
    for prefix in ("eagle3", "msd"):
        if low.startswith(prefix + ":"):
            ref = given[len(prefix) + 1 :].strip()
            if not ref:
                raise InputError(f"{prefix}: takes a head folder or Hub id, e.g. {prefix}:owner/head, got {given!r}")
            return DrafterName(prefix, given, ref=local(ref))
    if is_plugin(given):
        return DrafterName("plugin", given, ref=given)
    return DrafterName("model", given, ref=local(given))
