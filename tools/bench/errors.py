"""The benchmark's one-line errors (``core.errors.first_line`` shortens a message to its first line)."""

from __future__ import annotations


class BenchError(Exception):
    """A user-facing, one-line error (exit status 2)."""
