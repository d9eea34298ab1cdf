"""The errors whose messages are meant for the user (the CLI, the app and the API show them as is),
and the one wrapper that turns them into a command line's "error: ..." and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message is meant for the user."""


class InputError(ValueError):
    """Bad user input (prompt, image, parameters); the message is meant for the user."""


def first_line(e: BaseException, limit: int | None = 300) -> str:
    """The first line of an exception's message (at most ``limit`` characters), else its type."""
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    return text if limit is None else text[:limit]


def run_command(
    command: Callable[[], int],
    user_errors: tuple[type[BaseException], ...] = (),
    interrupted: str = "interrupted",
) -> int:
    """Run a command line's body: a user's mistake (``InputError``, ``ModelLoadError``, a
    ``ValueError`` from a check, or one of ``user_errors``) prints one line "error: ..." on stderr
    and returns 2 (no traceback); Ctrl-C prints ``interrupted`` and returns 130."""
    try:
        return command()
    except (InputError, ModelLoadError, ValueError, *user_errors) as e:
        print(f"error: {first_line(e, None)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
