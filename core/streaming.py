"""Decode in a worker thread and watch it step by step (for live displays; no UI import).

    for tr in api.stream(pair, prompt, image, spec, sampling, 64):   # = follow(<api.run bound>, ...)
        show(tr)                     # snapshots while decoding, then the finished trace

Every item is a ``Trace``. While decoding, each is a snapshot of the steps done so far
(``stop_reason == ""``, token pieces resolved for what it holds); the last item is the
finished trace that ``api.run`` returns (``stop_reason`` set). Snapshots come at most every
``every`` seconds, so a slow consumer never slows the decoder down: it just sees fewer of them.
An error in the decoder is re-raised in the consumer's thread. Closing the generator early
(``close()``, or a consumer that stops iterating) asks the decoder to stop after its step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from .trace import Trace


class _Pieces:
    """Token id -> text piece, resolved once per id (a snapshot's vocab grows as it is shown)."""

    def __init__(self, target):
        self.target = target
        self.vocab: dict[str, str] = {}

    def add(self, ids) -> None:
        for i in ids:
            k = str(i)
            if k not in self.vocab:
                try:
                    self.vocab[k] = self.target.decode_piece(int(i))
                except Exception:  # a piece the tokenizer cannot decode
                    self.vocab[k] = f"<{i}>"


def snapshot(tr: Trace, pieces: _Pieces) -> Trace:
    """A copy of a trace being recorded, safe to read while the decoder appends to the original."""
    steps, out = list(tr.steps), list(tr.output)
    pieces.add(out)
    for s in steps[-1:]:
        pieces.add(s.tokens)
        pieces.add([s.token])
    return Trace(
        meta=dict(tr.meta),
        prompt_tokens=tr.prompt_tokens,
        first_token=tr.first_token,
        t_prefill=tr.t_prefill,
        steps=steps,
        output=out,
        vocab=dict(pieces.vocab),
    )


def follow(decode: Callable[..., Trace], target, should_stop: Callable[[], bool] | None = None, every: float = 0.25) -> Iterator[Trace]:
    """Run ``decode(on_step=, should_stop=)`` (a decoding call: ``api.run`` with its inputs bound)
    in a worker thread, yielding a snapshot ``Trace`` at most every ``every`` s while steps
    complete, then the finished trace (also the generator's return value). ``should_stop``:
    polled by the engine between steps (a Stop button, a time limit); a consumer that goes away
    stops the decoder after its current step."""
    box: dict = {"trace": None, "n": 0, "error": None, "result": None}
    closed = threading.Event()

    def stop() -> bool:
        return closed.is_set() or (should_stop is not None and bool(should_stop()))

    def on_step(tr: Trace) -> None:
        box["trace"] = tr
        box["n"] += 1

    def work() -> None:
        try:
            box["result"] = decode(on_step=on_step, should_stop=stop)
        except BaseException as e:  # re-raised in the consumer's thread
            box["error"] = e

    pieces = _Pieces(target)
    th = threading.Thread(target=work, name="specscope-decode", daemon=True)
    th.start()
    shown = 0
    try:
        while th.is_alive():
            th.join(every)
            if box["trace"] is not None and box["n"] != shown and th.is_alive():
                shown = box["n"]
                yield snapshot(box["trace"], pieces)
    finally:
        closed.set()
    if box["error"] is not None:
        raise box["error"]
    yield box["result"]
    return box["result"]
