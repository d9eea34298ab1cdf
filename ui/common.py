"""What every tab shares: messages, the image box, examples, the defaults and named outputs.

Named outputs: a handler returns (or yields) a plain dict keyed by output NAME,
``{"status": ..., "answer": ...}``; names it leaves out are not updated. ``Outputs`` maps the
names to the components of the built page, and ``Outputs.bind(fn)`` turns such a handler into
a Gradio event function that returns ``{component: value}``. Handlers never see the Blocks and
stay callable (and testable) without a page.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
import types
from dataclasses import dataclass

import gradio as gr

from core.errors import InputError, ModelLoadError
from core.images import load_image
from core.paths import ASSETS, ROOT

from . import limits, render

EXAMPLES_DIR = ASSETS / "examples"
EXPECTED = (InputError, ModelLoadError, ValueError)
GENERIC_ERROR = "Something went wrong on the server (it has been logged). Please try again."


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
    from core.drafters import tuned_spec
    from . import presets

    chain = tuned_spec(limits.default_target(), presets.default_drafter(), "chain")
    return Defaults(gamma=chain.gamma)


# ====================================================================== messages
def esc(s) -> str:
    return html.escape(str(s), quote=False)


def status_html(msg: str, kind: str = "") -> str:
    """``kind``: "" | ok | busy | warn | err. The busy mark is a CSS spinner (ui/style.py), not
    an emoji: a machine without an emoji font would draw an empty box."""
    icon = {"ok": "✓", "err": "⚠", "warn": "⚠"}.get(kind, "")
    return f'<div class="ss-status {kind}">{icon + " " if icon else ""}{msg}</div>'


_ABS_PATH = re.compile(r"(?<![\w.~])/(?:[^\s'\"(),;:]+/)+([^\s'\"(),;:]*)")


def scrub(msg: str) -> str:
    """No server paths in messages: the project root becomes relative, any other absolute
    path shows its last part only."""
    root = str(ROOT).rstrip("/") + "/"
    msg = msg.replace(root, "").replace(str(ROOT), ".")
    for tmp in {tempfile.gettempdir(), "/tmp"}:
        msg = re.sub(re.escape(tmp.rstrip("/")) + r"/[^\s'\"]*?([^/\s'\"]+)(?=['\"\s)]|$)", r"\1", msg)
    return _ABS_PATH.sub(lambda m: m.group(1) or "a folder", msg)


KEEP_VERBATIM = ("vocab", "text", "prompt", "output", "steps")


def scrub_tree(obj, keep=KEEP_VERBATIM):
    """``scrub`` applied to every string of a JSON-like value (dicts, lists), so a result or a
    trace shown or downloaded names a model folder or a file by its short name, never by a server
    path. Keys in ``keep`` (the answer's text, its tokens, the prompt) are left as they are."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {k: v if k in keep else scrub_tree(v, keep) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_tree(v, keep) for v in obj]
    return obj


def friendly(e: BaseException) -> str:
    msg = scrub(str(e).strip()) or type(e).__name__
    return msg[0].upper() + msg[1:] if msg else msg


def fallback_hint(e: BaseException, target, msg: str = "") -> str:
    """After a model that could not load: point back to the default, which keeps working
    (unless the message already says so)."""
    if (
        isinstance(e, ModelLoadError)
        and isinstance(target, str)
        and "default model" not in msg
        and target.strip() not in ("", "default", limits.default_target())
    ):
        return " The embedded default model still works: pick the 'SpecScope default' preset (Model settings)."
    return ""


def differs_note(temperature: float, divergence=None) -> str:
    """Why a speculative output differs from plain decoding's (shown next to "differs"): at T > 0
    only the distributions match; at T = 0 the classified divergence (core/divergence.py)."""
    if temperature > 0:
        return "sampling: only the distributions match, so the texts may differ"
    if divergence is None or divergence.identical:
        return ""
    if divergence.kind == "near-tie":
        return divergence.text
    return divergence.text + "; please report it"


def identity_kind(temperature: float, divergence) -> str:
    """The status colour of an identity verdict: ok (identical), warn (amber: a rounding near-tie,
    or sampling), err (red: a real disagreement at T = 0)."""
    if divergence is None or divergence.identical:
        return "ok"
    return "warn" if temperature > 0 or divergence.kind in ("near-tie", "shorter") else "err"


def bound_note(res: dict) -> str:
    """What the page says when a timed round measured above its bound (core.api.bound)."""
    if not res.get("above_bound"):
        return ""
    return (
        f"a timed round measured above its bound (τ = {max(res['bounds']):.2f}: no speedup can exceed "
        "the tokens per step) and again when re-measured: machine noise, that round is left out"
    )


def legend_html() -> str:
    """Legend of the Teach tab's text: the same colours as the Run tab's answer."""
    items = [
        ("accepted draft", render.COLOR_MAP["accepted draft"], "", "the drafter's guess, kept by the target"),
        ("bonus", render.COLOR_MAP["bonus"], "", "the target's own token after a fully accepted draft"),
        ("correction", render.COLOR_MAP["correction"], "", "the target's token in place of a rejected guess"),
        ("rejected guess", "#fde4e4", "text-decoration:line-through;color:#b91c1c", "a guess the target refused (not part of the answer)"),
    ]
    return (
        '<div class="ss-legend">'
        + "".join(
            f'<span title="{esc(tip)}"><span class="sw" style="background:{c}"></span><span style="{style}">{esc(n)}</span></span>'
            for n, c, style, tip in items
        )
        + "</div>"
    )


# ====================================================================== inputs
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


def plain_words(msg: str) -> str:
    """A message without the names of the libraries behind it."""
    return re.sub(r"\s+", " ", msg.replace("an image PIL can read", "an image this app can read").replace("PIL ", "")).strip()
