"""The tiny random-weight models now live in ``core.tiny``; this name stays for the tests that
import it (``tests.tiny_models`` *is* ``core.tiny``: same module object, same cache)."""
import sys

from core import tiny

sys.modules[__name__] = tiny
