"""Three-way merges for regeneration: base = pristine render, ours = disk, theirs = new render."""

from __future__ import annotations

from collections.abc import Sequence

from scaffolder.merge.lines import DEFAULT_LABELS, merge_lines
from scaffolder.merge.python import merge_python
from scaffolder.merge.result import MergeResult

__all__ = ["DEFAULT_LABELS", "MergeResult", "merge_file", "merge_lines", "merge_python"]


def merge_file(
    relpath: str, base: str, ours: str, theirs: str, labels: Sequence[str] = DEFAULT_LABELS
) -> MergeResult:
    """Merge one file three ways, choosing the engine by its extension (``.py`` -> structural)."""
    if relpath.endswith(".py"):
        return merge_python(base, ours, theirs, labels)
    return merge_lines(base, ours, theirs, labels)
