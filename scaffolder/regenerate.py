"""``scaffold regenerate``: apply a new config (or a newer generator) to a package, keeping edits.

Every file is merged three ways: base = the previous render, kept in ``.scaffold/base.json``,
ours = the file on disk, theirs = the new render (see ``docs/regeneration.md``). The new package
is staged in a sibling temp folder and swapped in at once, so an interrupted run leaves the
package as it was.

This module computes and applies plans and words the report as plain lines; ``scaffolder/cli.py``
prints them and owns the exit codes.
"""

from __future__ import annotations

import difflib
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaffolder import staging
from scaffolder.errors import ScaffoldError
from scaffolder.merge.newlines import from_lf, line_ending, to_lf
from scaffolder.record import (
    BASE_FILE,
    LEGACY_PRISTINE_DIR,
    RECORD_DIR,
    RECORD_FILES,
    Record,
    local_config_path,
    read_record,
    read_text,
    record_files,
    spec_dict,
)

if TYPE_CHECKING:
    from scaffolder.source import ResolvedSource

# Spec fields -> the config.json fields they come from (for the change report).
HF_FIELDS = {
    "vocab_size": "vocab_size",
    "dim": "hidden_size",
    "n_layers": "num_hidden_layers",
    "n_heads": "num_attention_heads",
    "n_kv_heads": "num_key_value_heads",
    "head_dim": "head_dim",
    "ffn_dim": "intermediate_size",
    "max_seq_len": "max_position_embeddings",
    "norm_eps": "rms_norm_eps",
    "rope": "rope_scaling / rope_parameters",
    "tie_word_embeddings": "tie_word_embeddings",
    "attention_bias": "attention_bias",
    "mlp_bias": "mlp_bias",
    "hidden_act": "hidden_act",
    "initializer_range": "initializer_range",
    "torch_dtype": "torch_dtype",
}

# What happened to a file, as reported.
UNCHANGED = "unchanged"
UPDATED = "updated"  # only the generator changed it
MERGED = "merged"  # both changed it; merged cleanly
CONFLICT = "conflict"
ADDED = "added"  # the generator renders a new file
REMOVED = "removed"  # the generator dropped an unedited file
KEPT_EDITED = "kept"  # the generator dropped a file you edited; yours stays
KEPT_DELETED = "deleted"  # you deleted the file; it stays deleted


@dataclass(frozen=True)
class FileChange:
    """One package file: its text now and after regeneration (None = absent), and how."""

    relpath: str
    action: str
    before: str | None
    after: str | None
    conflicts: int = 0
    note: str = ""

    @property
    def writes(self) -> bool:
        """True when regeneration changes this file on disk."""
        return self.before != self.after


@dataclass
class Plan:
    """Everything a regeneration would do, computed without touching the package."""

    package_dir: Path
    resolved: ResolvedSource
    spec_changes: list[str]
    rendered_changes: list[str]
    changes: list[FileChange]
    record: dict[str, str]
    record_changed: bool
    legacy_record: tuple[str, ...] = ()  # format-1 record files the new record replaces

    @property
    def conflicted(self) -> list[str]:
        """Files that hold conflict markers after regeneration."""
        return [c.relpath for c in self.changes if c.conflicts]

    @property
    def writes(self) -> list[FileChange]:
        """Package files regeneration changes, adds or deletes."""
        return [c for c in self.changes if c.writes]

    @property
    def changes_anything(self) -> bool:
        """True when regenerating would change the package or its record."""
        return bool(self.writes) or self.record_changed


# ---------------------------------------------------------------- planning


def resolve_new_source(
    record: Record, package_dir: Path, config: Path | None, revision: str | None
) -> tuple[ResolvedSource, str | None]:
    """Resolve the recorded source again, or the one given; return it and the revision asked."""
    from scaffolder.source import resolve_source

    if config is not None and revision is not None:
        raise ScaffoldError("pass --config or --revision, not both")
    if config is not None:
        if not config.is_file():
            raise ScaffoldError(f"--config '{config}' is not an existing config file")
        return resolve_source(str(config)), None
    recorded = record.source
    if recorded.kind == "local":
        if revision is not None:
            raise ScaffoldError(
                f"--revision applies to hub sources; this package was generated from the local "
                f"file {recorded.path}; pass --config PATH instead"
            )
        path = local_config_path(recorded, package_dir)
        if not path.is_file():
            raise ScaffoldError(
                f"the recorded config {recorded.path} (from {package_dir}) no longer exists; "
                "pass --config PATH"
            )
        return resolve_source(str(path)), None
    asked = revision if revision is not None else recorded.requested_revision
    return resolve_source(recorded.repo_id, asked), asked


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"rope": {"type": x}}`` -> ``{"rope.type": x}``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def spec_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Lines naming each architecture field that changed, with its config.json field.

    Fields only one side has (a generator version adds or drops spec fields, or a feature object
    appears) are summed up in one line each rather than listed as ``None -> value``.
    """
    before, after = _flatten(old), _flatten(new)
    lines = []
    for key in sorted(before.keys() & after.keys()):
        if before[key] == after[key]:
            continue
        top = key.split(".", 1)[0]
        hf = f" ({HF_FIELDS[top]})" if top in HF_FIELDS else ""
        lines.append(f"{key}{hf}: {before[key]!r} -> {after[key]!r}")
    for what, keys in (
        ("new", sorted(after.keys() - before.keys())),
        ("no longer recorded", sorted(before.keys() - after.keys())),
    ):
        if keys:
            shown = ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
            lines.append(f"{len(keys)} spec field(s) {what}: {shown}")
    return lines


def has_conflict_markers(text: str) -> bool:
    """True when ``text`` still holds a conflict block from an earlier regeneration."""
    lines = text.splitlines()
    return any(line.startswith("<<<<<<< ") for line in lines) and any(
        line.startswith(">>>>>>> ") for line in lines
    )


def _read_disk(package_dir: Path, relpath: str) -> str | None:
    """A package file's text, or None when it is absent."""
    path = package_dir / relpath
    if not path.is_file():
        return None
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError) as error:
        raise ScaffoldError(f"cannot read {path}: {error}") from None
    if has_conflict_markers(text):
        raise ScaffoldError(
            f"{path} still has conflict markers from an earlier regeneration; "
            "resolve them, then run regenerate again"
        )
    return text


def _merged(relpath: str, base: str, ours: str, theirs: str) -> FileChange:
    """Merge a file on disk with the new render (base: the previous render, or empty).

    The merge is by content: a file checked out with ``\\r\\n`` line ends (git's autocrlf) is
    merged as ``\\n`` and written back with ``\\r\\n`` (:mod:`scaffolder.merge.newlines`).
    """
    from scaffolder.merge import merge_file

    ending = line_ending(ours)
    content = to_lf(ours, ending)
    result = merge_file(relpath, base, content, theirs)
    if result.conflicts:
        return FileChange(relpath, CONFLICT, ours, from_lf(result.text, ending), result.conflicts)
    if result.text == content:
        return FileChange(relpath, UNCHANGED, ours, ours)
    action = UPDATED if content == base else MERGED
    return FileChange(relpath, action, ours, from_lf(result.text, ending))


def plan_file(relpath: str, base: str | None, ours: str | None, theirs: str | None) -> FileChange:
    """Decide one file: base = previous render, ours = on disk, theirs = new render."""
    if base is not None and theirs is not None:
        if ours is None:
            changed = f" (the new render changes it; see {BASE_FILE})" if base != theirs else ""
            return FileChange(relpath, KEPT_DELETED, None, None, note=f"you deleted it{changed}")
        return _merged(relpath, base, ours, theirs)
    if theirs is not None:  # the generator adds it
        if ours is None:
            return FileChange(relpath, ADDED, None, theirs)
        return _merged(relpath, "", ours, theirs)
    if base is not None and ours is not None:  # the generator drops it
        if to_lf(ours, line_ending(ours)) == base:
            return FileChange(relpath, REMOVED, ours, None)
        return FileChange(
            relpath, KEPT_EDITED, ours, ours, note="the generator dropped it; your edits keep it"
        )
    return FileChange(relpath, UNCHANGED, ours, ours)


def _current_record(package_dir: Path) -> dict[str, str | None]:
    """The record files on disk now, as ``{relpath: text}`` (None: absent), read with ``\\n``
    line ends (a record checked out with ``\\r\\n`` is not a change)."""
    paths = (package_dir / relpath for relpath in RECORD_FILES)
    return {
        relpath: read_text(path).replace("\r\n", "\n") if path.is_file() else None
        for relpath, path in zip(RECORD_FILES, paths, strict=True)
    }


def plan_regeneration(
    package_dir: Path, config: Path | None = None, revision: str | None = None
) -> Plan:
    """Resolve, render and merge in memory: what regenerating ``package_dir`` would do."""
    from scaffolder.generate import render_resolved

    package_dir = Path(package_dir)
    record = read_record(package_dir)
    resolved, asked = resolve_new_source(record, package_dir, config, revision)
    generated = render_resolved(resolved, record.package_name)
    new_record = record_files(
        resolved,
        generated.spec,
        record.package_name,
        generated.files,
        requested_revision=asked,
        package_dir=package_dir,
    )
    paths = sorted(record.base.keys() | generated.files.keys())
    changes = [
        plan_file(rel, record.base.get(rel), _read_disk(package_dir, rel), generated.files.get(rel))
        for rel in paths
    ]
    rendered = [rel for rel in paths if record.base.get(rel) != generated.files.get(rel)]
    return Plan(
        package_dir=package_dir,
        resolved=resolved,
        spec_changes=spec_changes(record.spec, spec_dict(generated.spec)),
        rendered_changes=rendered,
        changes=changes,
        record=new_record,
        record_changed=bool(record.legacy_files) or new_record != _current_record(package_dir),
        legacy_record=record.legacy_files,
    )


# ---------------------------------------------------------------- writing


@contextmanager
def locked(package_dir: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold the package's lock (:func:`scaffolder.staging.package_lock`) for the block: plan
    and write under it, so that two runs never merge against the same files at once
    (``shared`` for a run that only reads: ``--check``, ``--dry-run``)."""
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        raise ScaffoldError(f"package folder '{package_dir}' does not exist")
    with staging.package_lock(package_dir.resolve(), shared=shared):
        yield


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a file into the staging tree (cheap), copying where links are not possible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _put(root: Path, relpath: str, text: str | None) -> None:
    """Write (or, for None, delete) a staged file; never writes through a hard link."""
    path = root / relpath
    path.unlink(missing_ok=True)
    if text is None:
        _remove_empty_parents(root, path.parent)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def _remove_empty_parents(root: Path, folder: Path) -> None:
    """Remove folders left empty by a deletion, up to (not including) ``root``."""
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def write_atomically(
    package_dir: Path,
    files: dict[str, str | None],
    record: dict[str, str],
    legacy_record: Iterable[str] = (),
) -> None:
    """Apply file writes/deletions and a fresh ``.scaffold/`` record to the package, all at once.

    ``legacy_record`` names format-1 record files (``.scaffold/pristine/...``) to delete, with
    the folders they leave empty; anything else in ``.scaffold/`` is kept. The package is copied
    (hard links) into a sibling staging workspace (:mod:`scaffolder.staging`), changed there and
    swapped in; any failure before the swap leaves the package untouched and removes the
    workspace. Call it holding the package's lock (:func:`locked`).
    """
    package_dir = package_dir.resolve()
    workspace = staging.make_workspace(package_dir, "regenerate")
    staged = workspace / staging.STAGED
    try:
        shutil.copytree(package_dir, staged, symlinks=True, copy_function=_link_or_copy)
        removed: dict[str, str | None] = dict.fromkeys(legacy_record)
        for relpath, text in {**files, **record, **removed}.items():
            _put(staged, relpath, text)
        staging.swap_in(package_dir, staged)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def remove_stale(package_dir: Path) -> list[Path]:
    """Remove the staging workspaces interrupted runs left beside the package (see
    :mod:`scaffolder.staging`); returns them. Call it holding the lock (:func:`locked`)."""
    return staging.remove_stale_workspaces(Path(package_dir).resolve())


def apply_plan(plan: Plan) -> None:
    """Write what the plan decided: merged files, additions, deletions and the new record."""
    files = {change.relpath: change.after for change in plan.writes}
    write_atomically(plan.package_dir, files, plan.record, plan.legacy_record)


# ---------------------------------------------------------------- reporting


def unified_diff(plan: Plan) -> str:
    """A unified diff of every package file regeneration would change (record excluded)."""
    chunks = []
    for change in plan.writes:
        before = (change.before or "").splitlines(keepends=True)
        after = (change.after or "").splitlines(keepends=True)
        from_name = f"a/{change.relpath}" if change.before is not None else "/dev/null"
        to_name = f"b/{change.relpath}" if change.after is not None else "/dev/null"
        lines = difflib.unified_diff(before, after, from_name, to_name)
        chunks.append("".join(line if line.endswith("\n") else line + "\n" for line in lines))
    return "".join(chunks)


def _listing(label: str, items: Iterable[str]) -> list[str]:
    """``label first-item`` then the other items aligned under it."""
    items = list(items)
    return [f"{label if i == 0 else '':<10} {item}" for i, item in enumerate(items)]


def summary_lines(plan: Plan) -> list[str]:
    """The human report: source, field changes, touched files, what happens to each file."""
    lines = _listing("source", [plan.resolved.description])
    lines += _listing("changed", plan.spec_changes or ["no architecture field changed"])
    lines += _listing("touches", plan.rendered_changes or ["no rendered file changed"])
    reported = [
        f"{c.action:<9} {c.relpath}" + (f" ({c.note})" if c.note else "")
        for c in plan.changes
        if c.action != UNCHANGED
    ]
    lines += _listing("files", reported)
    return lines


def _say(label: str, text: str) -> str:
    """One report line: a label column, then the text."""
    return f"{label:<10} {text}"


def check_lines(plan: Plan) -> list[str]:
    """The ``--check`` verdict: up to date, or what regenerating would change."""
    if not plan.changes_anything:
        return [_say("check", f"{plan.package_dir} is up to date")]
    changed = [c.relpath for c in plan.writes]
    if plan.record_changed:
        changed.append(f"{RECORD_DIR}/ (regeneration record)")
    return [_say("check", f"regenerating {plan.package_dir} would change: {', '.join(changed)}")]


def stale_lines(removed: Iterable[Path]) -> list[str]:
    """One line per staging workspace of an interrupted run that was removed."""
    return [_say("removed", f"{path}, left by an interrupted scaffold run") for path in removed]


def result_lines(plan: Plan, *, dry_run: bool = False) -> list[str]:
    """The closing line(s) after writing the plan (or not, for ``--dry-run``)."""
    if not plan.changes_anything:
        lines = [_say("result", f"{plan.package_dir} is already up to date")]
    else:
        verb = "would write" if dry_run else "wrote"
        files = f"{len(plan.writes)} file(s) in {plan.package_dir}"
        lines = [_say("result", f"{verb} {files} and its {RECORD_DIR}/ record")]
    if plan.legacy_record:
        verb = "would replace" if dry_run else "replaced"
        lines.append(_say("record", f"{verb} {LEGACY_PRISTINE_DIR}/ with {BASE_FILE}"))
    if plan.conflicted:
        lines.append(
            _say(
                "conflicts",
                f"{len(plan.conflicted)} file(s): {', '.join(plan.conflicted)}; edit the "
                "<<<<<<< ... >>>>>>> blocks, keeping what you want",
            )
        )
    return lines
