"""The errors whose messages are meant for the user (the CLI, the app and the API show them as is)."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message is meant for the user."""


class InputError(ValueError):
    """Bad user input (prompt, image, parameters); the message is meant for the user."""
