"""``python -m tools.bench``: see tools/bench/__init__.py and docs/benchmark.md."""

import sys

from .cli import main

sys.exit(main())
