"""What the page says: status lines, messages without server paths, and the one error wrapper of
every handler (``guarded``).

A handler returns or yields ``{output name: value}`` (``ui/outputs.py``). ``guarded`` turns an
error into such a dict: an expected one (bad input, a model that cannot load) becomes a warning
and a red status line in the page's words, anything else is logged and shown as
``GENERIC_ERROR``; either way the views are emptied, so no stale result stays below the message.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import re
import tempfile

import gradio as gr

from core.api import ROOT, InputError, ModelLoadError

from . import limits

log = logging.getLogger("specscope.app")

EXPECTED = (InputError, ModelLoadError, ValueError)
GENERIC_ERROR = "Something went wrong on the server (it has been logged). Please try again."


def esc(s) -> str:
    return html.escape(str(s), quote=False)


def status_html(msg: str, kind: str = "") -> str:
    """``kind``: "" | ok | busy | warn | err. The busy mark is a CSS spinner (ui/style.py), not
    an emoji: a machine without an emoji font would draw an empty box."""
    icon = {"ok": "✓", "err": "⚠", "warn": "⚠"}.get(kind, "")
    return f'<div class="ss-status {kind}">{icon + " " if icon else ""}{msg}</div>'


def with_notes(html_status: str, notes) -> str:
    """A status line followed by its notes (a capped value, a missing image), each a warning."""
    return html_status + "".join(status_html(esc(n), "warn") for n in notes)


_ABS_PATH = re.compile(r"(?<![\w.~])/(?:[^\s'\"(),;:]+/)+([^\s'\"(),;:]*)")


def scrub(msg: str) -> str:
    """No server paths in messages: the project root becomes relative, any other absolute
    path shows its last part only."""
    root = str(ROOT).rstrip("/") + "/"
    msg = msg.replace(root, "").replace(str(ROOT), ".")
    for tmp in {tempfile.gettempdir(), "/tmp"}:
        msg = re.sub(re.escape(tmp.rstrip("/")) + r"/[^\s'\"]*?([^/\s'\"]+)(?=['\"\s)]|$)", r"\1", msg)
    return _ABS_PATH.sub(lambda m: m.group(1) or "a folder", msg)


KEEP_VERBATIM = ("vocab", "text", "prompt", "output", "steps", "plain_text", "plain_output", "reference_output")


def scrub_tree(obj, keep=KEEP_VERBATIM):
    """``scrub`` applied to every string of a JSON-like value (dicts, lists), so a result or a
    trace shown or downloaded names a model folder or a file by its short name, never by a server
    path. Keys in ``keep`` (the answers' text, their tokens, the prompt) are left as they are."""
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


def plain_words(msg: str) -> str:
    """A message without the names of the libraries behind it."""
    return re.sub(r"\s+", " ", msg.replace("an image PIL can read", "an image this app can read").replace("PIL ", "")).strip()


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


# ====================================================================== the one error wrapper
def guarded(what: str, cleared=dict):
    """Decorate a handler (a function or a generator of ``{output name: value}``): an error ends it
    with ``{"status": <the message>, **cleared()}``. Expected errors (``EXPECTED``) are shown in the
    page's words, with a pointer back to the default model after a ``target`` that could not load;
    others are logged as "<what> failed" and shown as ``GENERIC_ERROR``. The signature is kept
    (Gradio passes ``request`` by it)."""

    def decorate(fn):
        sig = inspect.signature(fn)

        def failure(e: Exception, args, kw) -> dict:  # called inside the except block
            if isinstance(e, EXPECTED):
                msg = friendly(e)
                try:
                    target = sig.bind_partial(*args, **kw).arguments.get("target")
                except TypeError:
                    target = None
                msg += fallback_hint(e, target, msg)
                gr.Warning(msg)
                return {"status": status_html(esc(msg), "err"), **cleared()}
            log.exception("%s failed", what)
            gr.Warning(GENERIC_ERROR)
            return {"status": status_html(GENERIC_ERROR, "err"), **cleared()}

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen(*args, **kw):
                try:
                    yield from fn(*args, **kw)
                except Exception as e:
                    yield failure(e, args, kw)

            return gen

        @functools.wraps(fn)
        def plain(*args, **kw):
            try:
                return fn(*args, **kw)
            except Exception as e:
                return failure(e, args, kw)

        return plain

    return decorate
