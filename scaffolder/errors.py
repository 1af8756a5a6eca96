"""Errors the CLI reports as one line with exit code 2 (bad input) — never a traceback."""

from __future__ import annotations


class ScaffoldError(Exception):
    """Bad input: a missing or invalid config field, an unknown source, an unusable output path.

    The message is one line that names the field or value and says what to do.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ConfigFieldError(ScaffoldError):
    """A config.json field is missing, of the wrong type, or inconsistent with another field."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(f"config field '{field}': {reason}")
