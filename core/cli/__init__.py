"""The command line of the decoding library: ``python -m core run|compare|visual|replay|audit|export``
(docs/usage.md "CLI", docs/insight.md).

    parser.py   the flags (shape.py: the draft-shape flags, shared with ``python -m tools.bench``)
    decode.py   run, compare, visual
    replay.py   replay, audit
    export.py   export
"""

from __future__ import annotations

import os

from ..errors import run_command
from .parser import parser


def main(argv=None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no progress bars on stderr
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    args = parser().parse_args(argv)
    return run_command(lambda: _dispatch(args))


def _dispatch(args) -> int:
    from ..device import compile_default, draft_weights_default, head_screen_default, kernels_default

    kernels_default()  # a bad SPECSCOPE_KERNELS / COMPILE / DRAFT_WEIGHTS / HEAD_SCREEN: one line,
    compile_default()  # before any model loads
    draft_weights_default()
    head_screen_default()
    if args.cmd == "replay":
        from .replay import replay

        return replay(args)
    if args.cmd == "audit":
        from .replay import audit

        return audit(args)
    if args.cmd == "export":
        from .export import export

        return export(args)
    from .decode import decode

    return decode(args)
