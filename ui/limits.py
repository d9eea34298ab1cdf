"""What the app accepts: limits, parameter checks and where models may be loaded from.

Everything a user can type or upload passes through here before it reaches a model.
Each check returns a clean value or raises ``InputError`` / ``ModelLoadError`` with a
message meant for the page.

Model locations
---------------
* the configured default target (``SPECSCOPE_DEFAULT_TARGET`` or ``"default"`` = assets/target)
* drafter registry names (``ngram``, ``layerskip[:K]``, ``msd``, ``massv``, ``small-vlm``, ``text-lm``)
* Hugging Face Hub ids of the form ``owner/name``
* local directories inside ``assets/`` or inside a directory listed in ``SPECSCOPE_MODEL_ROOTS``
  (``os.pathsep``-separated). Anything else is refused.
* ``package.module:Class`` third-party drafters only when ``SPECSCOPE_ALLOW_PLUGINS=1`` (they
  import and run code named by the user).
"""

from __future__ import annotations

import math
import os
import re
import socket
import threading
import time
from pathlib import Path

from core.api import ASSETS, SHIPPED_DRAFTERS, InputError, ModelLoadError, parse_branching as parse_shape_branching, parse_drafter

MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 512
MAX_TRACE_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_COMPARE_CONFIGS = 10
MAX_BRANCHING_DEPTHS = 12
# Gradio keeps every session's last outputs (trace, plots, tables: ~1 MB after runs of <= 256 tokens) until
# the session is evicted; keep the most recent MAX_SESSIONS (SPECSCOPE_MAX_SESSIONS) instead of
# Gradio's 10,000, and drop a session's trace after STATE_TTL_SECONDS.
MAX_SESSIONS = 200
STATE_TTL_SECONDS = 3600

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REGISTRY_DRAFTERS = ("none", "ar", "ngram", "layerskip") + tuple(SHIPPED_DRAFTERS)


def default_target() -> str:
    """The target the app starts with (operator's choice, trusted)."""
    return os.environ.get("SPECSCOPE_DEFAULT_TARGET", "").strip() or "default"


def model_roots() -> list[Path]:
    roots = [ASSETS.resolve()]
    for part in os.environ.get("SPECSCOPE_MODEL_ROOTS", "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser().resolve())
    return roots


def max_sessions() -> int:
    raw = os.environ.get("SPECSCOPE_MAX_SESSIONS", "").strip()
    try:
        return max(1, int(raw)) if raw else MAX_SESSIONS
    except ValueError:
        return MAX_SESSIONS


# ------------------------------------------------------------------ text and numbers
def check_prompt(prompt) -> str:
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise InputError("the prompt must be text")
    text = prompt.replace("\x00", "").strip()
    if not text:
        raise InputError("please type a prompt (a question or instruction about the image)")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"the prompt is too long: {len(text):,} characters (limit {MAX_PROMPT_CHARS:,})")
    return text


def _number(name: str, value) -> float:
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InputError(f"{name} must be a number, got {value!r}") from None
    if value is None or not isinstance(value, (int, float)):
        raise InputError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return v


def check_int(name: str, value, lo: int, hi: int) -> int:
    v = _number(name, value)
    if v != int(v):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    if not lo <= v <= hi:
        raise InputError(f"{name} must be between {lo} and {hi}, got {int(v)}")
    return int(v)


def check_max_new(value, hi: int = MAX_NEW_TOKENS) -> tuple[int, str]:
    """Max new tokens: (value, note). Below 1 is refused; above ``hi`` is capped, and the note
    says so (shown with the result)."""
    v = _number("max new tokens", value)
    if v != int(v):
        raise InputError(f"max new tokens must be a whole number, got {value!r}")
    if v < 1:
        raise InputError(f"max new tokens must be at least 1, got {int(v)}")
    if v > hi:
        return hi, f"max new tokens capped at {hi} (you asked for {int(v):,})"
    return int(v), ""


def check_float(name: str, value, lo: float, hi: float, lo_open: bool = False) -> float:
    v = _number(name, value)
    if v < lo or v > hi or (lo_open and v == lo):
        bracket = "(" if lo_open else "["
        raise InputError(f"{name} must be in {bracket}{lo:g}, {hi:g}], got {v:g}")
    return v


def parse_branching(text) -> tuple[int, ...]:
    """'3,2,2,1' -> (3, 2, 2, 1): children per node at each depth of a static tree (the library's
    parser, ``api.parse_branching``), at most ``MAX_BRANCHING_DEPTHS`` depths in the app."""
    out = parse_shape_branching(text, "branching")
    if len(out) > MAX_BRANCHING_DEPTHS:
        raise InputError(f"branching: at most {MAX_BRANCHING_DEPTHS} depths, got {len(out)}")
    return out


# ------------------------------------------------------------------ model ids
def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or os.path.exists(name)


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def check_local_dir(name: str) -> str:
    path = Path(name).expanduser().resolve()
    roots = model_roots()
    if not _inside(path, roots):
        raise InputError(
            "local model paths must be inside an allowed folder (assets/ or a folder the "
            "operator listed in SPECSCOPE_MODEL_ROOTS); this one is not"
        )
    if not path.is_dir():
        raise InputError(f"no model directory at {Path(name).name!r}")
    if not (path / "config.json").exists():
        raise InputError(f"{Path(name).name!r} is not a model directory (no config.json)")
    return str(path)


def _check_drafter(name: str) -> str:
    """A drafter name, read by the library's one parser (``parse_drafter``); what it names is then
    held to the app's rules: a registry name as given (case-blind), at most 64 skipped layers, a
    head's folder or Hub id checked like a model's, plugins only when the operator allows them."""
    low = name.lower()
    d = parse_drafter(low if low in REGISTRY_DRAFTERS else name)  # malformed names: its messages
    if d is None or d.kind == "ngram" or d.shipped:
        return low
    if d.kind == "layerskip":
        if d.layers is not None and d.layers > 64:
            raise InputError(f"layerskip takes a layer count, e.g. layerskip:2, got {name!r}")
        return low
    if d.kind in ("msd", "eagle3"):  # a head: folder or Hub id
        return f"{d.kind}:" + check_model_id(d.ref, f"{d.kind.upper()} head")
    if d.kind == "plugin":
        if os.environ.get("SPECSCOPE_ALLOW_PLUGINS") != "1":
            raise InputError(
                "third-party drafter classes (module:Class) are disabled in the app; "
                "the operator can enable them with SPECSCOPE_ALLOW_PLUGINS=1"
            )
        return name
    return _check_model(name, "drafter")  # a whole model (or a head told apart by its files)


def check_model_id(name, kind: str = "target") -> str:
    """Validate a target / drafter identifier typed by a user; returns what to pass to
    ``core.api.load_pair``. ``kind``: "target", "drafter" or a head's ("MSD head")."""
    if name is None or not isinstance(name, str) or not name.strip():
        raise InputError(f"please give a {kind} model (a Hub id like owner/name)")
    name = name.strip()
    if len(name) > 300:
        raise InputError(f"{kind} id too long")
    if kind == "drafter":
        return _check_drafter(name)
    if kind == "target" and name in ("default", default_target()):
        return name
    return _check_model(name, kind)


def _check_model(name: str, kind: str) -> str:
    """A model folder inside an allowed root or a Hub id (reachable or cached)."""
    if _looks_like_path(name):
        return check_local_dir(name)
    if HUB_ID.match(name) and ".." not in name and "--" not in name:
        check_hub_available(name)
        return name
    raise InputError(
        f"unknown {kind} {name!r}: use a Hugging Face Hub id (owner/name)"
        + (", a drafter name (ngram, layerskip, msd, massv, small-vlm, text-lm)" if kind == "drafter" else "")
        + " or a model folder inside an allowed root"
    )


# ------------------------------------------------------------------ the Hub
_hub_state = {"t": 0.0, "ok": False}
_hub_lock = threading.Lock()


def hub_offline_flag() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 2.0) -> bool:
    """A quick TCP probe of the Hub (cached 60 s), so an offline machine fails in a second
    instead of after transformers' ~30 s of retries."""
    if hub_offline_flag():
        return False
    with _hub_lock:
        if time.monotonic() - _hub_state["t"] < 60:
            return _hub_state["ok"]
        host = re.sub(r"^https?://", "", os.environ.get("HF_ENDPOINT", "https://huggingface.co")).split("/")[0]
        hostname, _, port = host.partition(":")
        try:
            socket.create_connection((hostname, int(port or 443)), timeout=timeout).close()
            ok = True
        except OSError:
            ok = False
        _hub_state.update(t=time.monotonic(), ok=ok)
        return ok


def in_local_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:
        return False


def check_hub_available(repo_id: str) -> None:
    if in_local_cache(repo_id) or hub_reachable():
        return
    raise ModelLoadError(f"{repo_id!r} is not in the local model cache and the Hugging Face Hub is unreachable (offline?).")


def memory_available_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None
