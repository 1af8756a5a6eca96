"""The one exception of the Primus reader; every message is a single line."""

from __future__ import annotations


class PrimusConfigError(ValueError):
    """A Primus YAML that cannot be resolved or mapped; the message is a single line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
