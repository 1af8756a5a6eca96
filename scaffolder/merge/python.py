"""Structural three-way merge of Python sources with libcst.

A module (and, recursively, every class body) is cut into a *head* (text before the first
statement), a list of *members* (top-level statements, classes, methods) and a *tail*. Each member
keeps its exact text, leading comments and blank lines included, and gets a key: ``def``/``class``
plus the name, ``assign`` plus the target, a docstring, or the statement's own code. Members are
matched by key across base, ours and theirs:

- edited by the user only -> the user's version; changed by the generator only -> the new version;
- added by the user -> kept, in the user's order; added by the generator -> inserted after the
  member that precedes it in the new render;
- deleted by the user -> stays deleted, unless the generator changed it (a conflict);
- deleted by the generator but edited by the user -> a conflict;
- changed on both sides -> classes recurse member by member, anything else is merged line by line.

When a source does not parse, its structure cannot be cut cleanly, or a conflict-free result
would not parse, the whole file falls back to :func:`scaffolder.merge.lines.merge_lines`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst

from scaffolder.merge.lines import DEFAULT_LABELS, conflict_block, merge_lines, split_lines
from scaffolder.merge.result import MergeResult

Key = tuple[str, ...]
# Below this share of base members still present (by key) in the user's file, the structure is
# considered too different to match member by member.
MIN_SHARED_MEMBERS = 0.5


class StructureError(Exception):
    """The source cannot be cut into head, members and tail that reproduce it exactly."""


@dataclass(frozen=True)
class Member:
    """One statement of a block: its key, exact text, and its own body when it is a class."""

    key: Key
    text: str
    block: Block | None = None


@dataclass(frozen=True)
class Block:
    """A module or class body: text before the members, the members, text after them."""

    head: str
    members: tuple[Member, ...]
    tail: str

    @property
    def text(self) -> str:
        """The block's full source text."""
        return self.head + "".join(m.text for m in self.members) + self.tail

    def by_key(self) -> dict[Key, Member]:
        """Members indexed by key."""
        return {m.key: m for m in self.members}


def _bare_code(module: cst.Module, node: cst.CSTNode) -> str:
    """A statement's code without its leading comments and blank lines."""
    if hasattr(node, "leading_lines"):
        node = node.with_changes(leading_lines=())
    return module.code_for_node(node).strip()


def _simple_key(module: cst.Module, line: cst.SimpleStatementLine, first: bool) -> Key:
    """Key of a one-line statement: docstring, assigned name, or the code itself."""
    stmt = line.body[0]
    if (
        first
        and isinstance(stmt, cst.Expr)
        and isinstance(stmt.value, (cst.SimpleString, cst.ConcatenatedString))
    ):
        return ("docstring",)
    if len(line.body) == 1 and isinstance(stmt, cst.Assign):
        return ("assign", *(module.code_for_node(t.target) for t in stmt.targets))
    if len(line.body) == 1 and isinstance(stmt, cst.AnnAssign):
        return ("assign", module.code_for_node(stmt.target))
    return ("stmt", _bare_code(module, line))


def member_key(module: cst.Module, node: cst.CSTNode, first: bool) -> Key:
    """The name a member is matched by across the three versions."""
    if isinstance(node, cst.FunctionDef):
        return ("def", node.name.value)
    if isinstance(node, cst.ClassDef):
        return ("class", node.name.value)
    if isinstance(node, cst.SimpleStatementLine):
        return _simple_key(module, node, first)
    header = _bare_code(module, node).split("\n", 1)[0]
    return (type(node).__name__, header)


def _unique_keys(keys: list[Key]) -> list[Key]:
    """Suffix each key with its occurrence number so repeated statements stay distinct."""
    seen: Counter[Key] = Counter()
    unique = []
    for key in keys:
        unique.append((*key, str(seen[key])))
        seen[key] += 1
    return unique


def _line_count(module: cst.Module, node: cst.CSTNode) -> int:
    """How many source lines a statement spans (leading lines included)."""
    return len(split_lines(module.code_for_node(node)))


def build_block(
    module: cst.Module, text: str, statements: Sequence[cst.CSTNode], n_tail_lines: int
) -> Block:
    """Cut ``text`` (a module or class) into head, one member per statement, and tail."""
    lines = split_lines(text)
    counts = [_line_count(module, s) for s in statements]
    n_head = len(lines) - sum(counts) - n_tail_lines
    if n_head < 0:
        raise StructureError("statement line counts exceed the source")
    keys = _unique_keys([member_key(module, s, i == 0) for i, s in enumerate(statements)])
    members, pos = [], n_head
    for key, node, count in zip(keys, statements, counts, strict=True):
        member_text = "".join(lines[pos : pos + count])
        members.append(Member(key, member_text, _class_block(module, node, member_text)))
        pos += count
    block = Block("".join(lines[:n_head]), tuple(members), "".join(lines[pos:]))
    if block.text != text:
        raise StructureError("blocks do not reproduce the source")
    return block


def _class_block(module: cst.Module, node: cst.CSTNode, text: str) -> Block | None:
    """The body of a class with an indented body, cut into members; None for anything else."""
    if not isinstance(node, cst.ClassDef) or not isinstance(node.body, cst.IndentedBlock):
        return None
    return build_block(module, text, node.body.body, len(node.body.footer))


def parse_block(source: str) -> Block:
    """Parse a Python source into its top-level block (raises on syntax errors)."""
    module = cst.parse_module(source)
    n_tail = len(module.footer)
    return build_block(module, source, module.body, n_tail)


class _Merger:
    """Merges blocks member by member, counting conflicts."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = labels
        self.conflicts = 0

    def lines(self, base: str, ours: str, theirs: str) -> str:
        """Line-level merge of one piece of text."""
        result = merge_lines(base, ours, theirs, self.labels)
        self.conflicts += result.conflicts
        return result.text

    def member(self, base: Member, ours: Member, theirs: Member) -> str:
        """Merge one member present in all three versions."""
        if ours.text == base.text:
            return theirs.text
        if theirs.text == base.text or ours.text == theirs.text:
            return ours.text
        if base.block and ours.block and theirs.block:
            return self.block(base.block, ours.block, theirs.block)
        return self.lines(base.text, ours.text, theirs.text)

    def _ours_member(
        self, member: Member, base: dict[Key, Member], theirs: dict[Key, Member]
    ) -> str | None:
        """Merged text of a member of the user's file, or None when it is dropped."""
        in_base, in_theirs = base.get(member.key), theirs.get(member.key)
        if in_base and in_theirs:
            return self.member(in_base, member, in_theirs)
        if in_base:  # the generator dropped it; an edited one conflicts
            if member.text == in_base.text:
                return None
            return self.lines(in_base.text, member.text, "")
        if in_theirs:  # both sides added it
            return self.lines("", member.text, in_theirs.text)
        return member.text  # the user added it

    def _theirs_member(self, member: Member, base: dict[Key, Member]) -> str | None:
        """Text to insert for a member the user's file lacks, or None when it stays out."""
        in_base = base.get(member.key)
        if in_base is None:  # the generator added it
            return member.text
        if member.text == in_base.text:  # the user deleted it; the generator left it alone
            return None
        return self.lines(in_base.text, "", member.text)

    def members(self, base: Block, ours: Block, theirs: Block) -> list[str]:
        """Merged member texts, in the user's order, with the generator's new members placed."""
        base_keys, theirs_keys = base.by_key(), theirs.by_key()
        merged: list[tuple[Key, str]] = []
        for member in ours.members:
            text = self._ours_member(member, base_keys, theirs_keys)
            if text is not None:
                merged.append((member.key, text))
        ours_keys = ours.by_key()
        for index, member in enumerate(theirs.members):
            if member.key in ours_keys:
                continue
            text = self._theirs_member(member, base_keys)
            if text is not None:
                position = _insert_position(merged, theirs.members, index)
                merged.insert(position, (member.key, text))
        return [text for _, text in merged]

    def block(self, base: Block, ours: Block, theirs: Block) -> str:
        """Merge head, members and tail of a module or class."""
        head = self.lines(base.head, ours.head, theirs.head)
        body = _join_members(self.members(base, ours, theirs))
        tail = self.lines(base.tail, ours.tail, theirs.tail)
        return head + body + tail


def _join_members(texts: list[str]) -> str:
    """Concatenate member texts, ending each but the last with a newline (a file's last
    statement may lack one, and another member can now follow it)."""
    ended = [t if t.endswith("\n") else t + "\n" for t in texts[:-1]]
    return "".join(ended + texts[-1:])


def _insert_position(merged: list[tuple[Key, str]], theirs: Sequence[Member], index: int) -> int:
    """Where a generator member goes: after its nearest placed predecessor, else before its
    nearest placed successor, else at the end."""
    placed = {key: pos for pos, (key, _) in enumerate(merged)}
    for before in reversed(theirs[:index]):
        if before.key in placed:
            return placed[before.key] + 1
    for after in theirs[index + 1 :]:
        if after.key in placed:
            return placed[after.key]
    return len(merged)


def _too_different(base: Block, ours: Block) -> bool:
    """True when too few of the base's members can still be found in the user's file."""
    if len(base.members) < 2:
        return False
    shared = len(base.by_key().keys() & ours.by_key().keys())
    return shared < MIN_SHARED_MEMBERS * len(base.members)


def _parses(source: str) -> bool:
    """True when ``source`` is valid Python."""
    try:
        cst.parse_module(source)
    except cst.ParserSyntaxError:
        return False
    return True


def _line_fallback(
    base: str, ours: str, theirs: str, labels: Sequence[str], all_parse: bool
) -> MergeResult:
    """The line merge of the whole file. When all three versions parse (``all_parse``), a
    conflict-free result that does not parse becomes one whole-file conflict instead, so a clean
    result is always valid Python."""
    result = merge_lines(base, ours, theirs, labels)
    if all_parse and result.conflicts == 0 and not _parses(result.text):
        block = conflict_block(split_lines(base), split_lines(ours), split_lines(theirs), labels)
        return MergeResult("".join(block), 1, "python->lines")
    return MergeResult(result.text, result.conflicts, "python->lines")


def merge_python(
    base: str, ours: str, theirs: str, labels: Sequence[str] = DEFAULT_LABELS
) -> MergeResult:
    """Three-way merge of Python sources by top-level statements, classes and methods."""
    if ours == base or ours == theirs:
        return MergeResult(theirs, 0, "python")
    if theirs == base:
        return MergeResult(ours, 0, "python")
    try:
        blocks = [parse_block(source) for source in (base, ours, theirs)]
    except (cst.ParserSyntaxError, StructureError):
        return _line_fallback(base, ours, theirs, labels, all_parse=False)
    if _too_different(blocks[0], blocks[1]):
        return _line_fallback(base, ours, theirs, labels, all_parse=True)
    merger = _Merger(labels)
    text = merger.block(*blocks)
    if merger.conflicts == 0 and not _parses(text):
        return _line_fallback(base, ours, theirs, labels, all_parse=True)
    return MergeResult(text, merger.conflicts, "python")
