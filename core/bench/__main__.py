"""``python -m core.bench``: see core/bench/__init__.py and docs/benchmark.md."""

import sys

from .cli import main

sys.exit(main())
