"""``python -m core run|compare|visual|replay|audit|export ...``: the command line lives in core/cli/."""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
