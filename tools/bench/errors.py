"""The benchmark's one-line errors."""

from __future__ import annotations


class BenchError(Exception):
    """A user-facing, one-line error (exit status 2)."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), for reports and errors."""
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:300]
