"""Line-level three-way merge with diff3 semantics.

The base is matched against each side with :class:`difflib.SequenceMatcher`. Base lines matched on
both sides, at aligned offsets, form *stable* chunks; the text between two stable chunks is an
*unstable* chunk. An unstable chunk changed on one side only takes that side; the same change on
both sides is taken once; anything else is a conflict, written with standard markers::

    <<<<<<< ours (your edits)
    ...
    ||||||| base
    ...
    =======
    ...
    >>>>>>> theirs (new render)

Lines that both sides share at the start or end of a conflicting chunk are written once, outside
the markers (git's "zdiff3" style); the base section always shows the full original chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from scaffolder.merge.result import MergeResult

DEFAULT_LABELS = ("ours (your edits)", "base", "theirs (new render)")
CONFLICT_START = "<<<<<<<"
CONFLICT_BASE = "|||||||"
CONFLICT_SEP = "======="
CONFLICT_END = ">>>>>>>"


def split_lines(text: str) -> list[str]:
    """Split ``text`` after every ``\\n``, keeping the line ends (only ``\\n`` counts as one)."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


@dataclass(frozen=True)
class Chunk:
    """A run of lines in base, ours and theirs; ``stable`` when all three hold the same lines."""

    base: list[str]
    ours: list[str]
    theirs: list[str]
    stable: bool


def _match_map(base: Sequence[str], other: Sequence[str]) -> dict[int, int]:
    """Map each base line index that has a partner in ``other`` to that partner's index."""
    matcher = SequenceMatcher(None, base, other, autojunk=False)
    mapping: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            mapping[block.a + offset] = block.b + offset
    return mapping


def diff3_chunks(base: list[str], ours: list[str], theirs: list[str]) -> list[Chunk]:
    """Cut the three line lists into alternating stable and unstable chunks."""
    to_ours, to_theirs = _match_map(base, ours), _match_map(base, theirs)
    chunks: list[Chunk] = []
    i, a, b = 0, 0, 0
    while True:
        start = i
        while i < len(base) and to_ours.get(i) == a and to_theirs.get(i) == b:
            i, a, b = i + 1, a + 1, b + 1
        if i > start:
            chunks.append(Chunk(base[start:i], ours[a - (i - start) : a], [], True))
        sync = i
        while sync < len(base) and not (sync in to_ours and sync in to_theirs):
            sync += 1
        end_a = to_ours[sync] if sync < len(base) else len(ours)
        end_b = to_theirs[sync] if sync < len(base) else len(theirs)
        if sync > i or end_a > a or end_b > b:
            chunks.append(Chunk(base[i:sync], ours[a:end_a], theirs[b:end_b], False))
        if sync >= len(base):
            return chunks
        i, a, b = sync, end_a, end_b


def _common_prefix(x: list[str], y: list[str]) -> int:
    """Number of leading lines ``x`` and ``y`` share."""
    n = 0
    while n < min(len(x), len(y)) and x[n] == y[n]:
        n += 1
    return n


def _terminated(lines: list[str]) -> list[str]:
    """Lines with a final newline added, so a conflict marker never joins the last line."""
    if lines and not lines[-1].endswith("\n"):
        return [*lines[:-1], lines[-1] + "\n"]
    return lines


def conflict_block(
    base: list[str], ours: list[str], theirs: list[str], labels: Sequence[str]
) -> list[str]:
    """The marker-delimited block that holds ours, base and theirs."""
    return [
        f"{CONFLICT_START} {labels[0]}\n",
        *_terminated(ours),
        f"{CONFLICT_BASE} {labels[1]}\n",
        *_terminated(base),
        f"{CONFLICT_SEP}\n",
        *_terminated(theirs),
        f"{CONFLICT_END} {labels[2]}\n",
    ]


def resolve_chunk(chunk: Chunk, labels: Sequence[str]) -> tuple[list[str], int]:
    """Merged lines for one unstable chunk and whether it conflicted (0 or 1)."""
    if chunk.ours == chunk.base:
        return chunk.theirs, 0
    if chunk.theirs == chunk.base or chunk.ours == chunk.theirs:
        return chunk.ours, 0
    head = _common_prefix(chunk.ours, chunk.theirs)
    ours, theirs = chunk.ours[head:], chunk.theirs[head:]
    tail = _common_prefix(ours[::-1], theirs[::-1])
    ours, theirs = ours[: len(ours) - tail], theirs[: len(theirs) - tail]
    shared_tail = chunk.ours[len(chunk.ours) - tail :] if tail else []
    block = conflict_block(chunk.base, ours, theirs, labels)
    return [*chunk.ours[:head], *block, *shared_tail], 1


def merge_lines(
    base: str, ours: str, theirs: str, labels: Sequence[str] = DEFAULT_LABELS
) -> MergeResult:
    """Three-way merge of three texts, line by line (diff3 semantics, conflicts marked)."""
    out: list[str] = []
    conflicts = 0
    for chunk in diff3_chunks(split_lines(base), split_lines(ours), split_lines(theirs)):
        if chunk.stable:
            out.extend(chunk.ours)
            continue
        lines, conflicted = resolve_chunk(chunk, labels)
        out.extend(lines)
        conflicts += conflicted
    return MergeResult("".join(out), conflicts, "lines")
