"""The outcome of a three-way merge."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MergeResult:
    """Merged text, how many conflict blocks it holds, and which engine produced it.

    ``strategy`` is ``"lines"`` (line-level diff3), ``"python"`` (libcst structural merge) or
    ``"python->lines"`` (structural merge was not possible, the line-level merge was used).
    """

    text: str
    conflicts: int
    strategy: str

    @property
    def clean(self) -> bool:
        """True when the merge needed no conflict markers."""
        return self.conflicts == 0
