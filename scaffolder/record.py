"""The regeneration record a generated package keeps under ``.scaffold/``.

Human-readable files, written next to the package's own files:

``.scaffold/source.json``
    where the config came from: ``kind`` (local, hf-cache, hub, bundled), ``repo_id``,
    ``requested_revision`` (what was asked for, re-resolved by ``scaffold regenerate``),
    ``revision`` (what it resolved to, e.g. a commit), ``path`` (local sources only: relative
    to the package folder, POSIX-style, so a cloned repository still finds it) and
    ``config_sha256``.
``.scaffold/spec.json``
    the normalized architecture spec the package was rendered from.
``.scaffold/generator.json``
    the generator name and version, the package name and the record format.
``.scaffold/base.json``
    every rendered file exactly as the generator wrote it, the base of the next three-way merge:
    ``{relpath: {"sha256": hex digest of the UTF-8 text, "text": text}}`` (sorted keys, indented,
    final newline). It is data, not a second source tree: nothing imports, lints or collects it.
``.scaffold/.gitattributes``
    marks the record ``linguist-generated`` and base.json ``-diff`` (collapsed in reviews, shown
    as binary in diffs); git still merges it as text.

Record format 1 kept the base as a tree of files, ``.scaffold/pristine/<relpath>``; it is still
read, and the next ``scaffold regenerate`` replaces it with base.json (:attr:`Record.legacy_files`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from scaffolder import __version__
from scaffolder.errors import ScaffoldError

if TYPE_CHECKING:
    from scaffolder.source import ResolvedSource
    from scaffolder.spec import ArchSpec

RECORD_DIR = ".scaffold"
SOURCE_FILE = f"{RECORD_DIR}/source.json"
SPEC_FILE = f"{RECORD_DIR}/spec.json"
GENERATOR_FILE = f"{RECORD_DIR}/generator.json"
BASE_FILE = f"{RECORD_DIR}/base.json"
GITATTRIBUTES_FILE = f"{RECORD_DIR}/.gitattributes"
RECORD_FILES = (SOURCE_FILE, SPEC_FILE, GENERATOR_FILE, BASE_FILE, GITATTRIBUTES_FILE)
LEGACY_PRISTINE_DIR = f"{RECORD_DIR}/pristine"  # record format 1: the base as a file tree
GENERATOR_NAME = "model-scaffolder"
RECORD_FORMAT = 2
GITATTRIBUTES = (
    "# Written by model-scaffolder: the regeneration record is generated data.\n"
    "# base.json holds the previous render; -diff shows it as binary in diffs, merges stay text.\n"
    "* linguist-generated=true\n"
    "base.json -diff\n"
)
SOURCE_KINDS = ("local", "hf-cache", "hub", "bundled")


@dataclass(frozen=True)
class SourceRecord:
    """Where a package's config.json came from, as recorded in ``.scaffold/source.json``."""

    kind: str
    repo_id: str | None
    requested_revision: str | None
    revision: str | None
    path: str | None
    config_sha256: str

    def describe(self) -> str:
        """One human line naming the recorded source."""
        if self.kind == "local":
            return f"local file {self.path}"
        at = f" at revision {self.revision}" if self.revision else ""
        return f"{self.repo_id} ({self.kind}){at}"


@dataclass(frozen=True)
class Record:
    """A package's ``.scaffold/`` record, read back from disk."""

    source: SourceRecord
    spec: dict[str, Any]
    generator: dict[str, Any]
    base: dict[str, str]  # the previous render, {relpath: text}: the base of the merge
    legacy_files: tuple[str, ...] = ()  # format-1 files (.scaffold/pristine/...) to remove

    @property
    def package_name(self) -> str:
        """The package name the files were rendered for."""
        return self.generator["package_name"]


def spec_dict(spec: ArchSpec) -> dict[str, Any]:
    """The spec as plain JSON data (what ``.scaffold/spec.json`` holds)."""
    return json.loads(json.dumps(asdict(spec), sort_keys=True))


def _json_text(data: dict[str, Any]) -> str:
    """Stable, readable JSON with a final newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def recorded_path(config_path: str | Path, package_dir: Path | None) -> str:
    """How a local config's path is recorded: relative to ``package_dir`` when given, else absolute.

    Relative (``../configs/config.json``) keeps the record valid in every clone of a repository
    that holds both the config and the package.
    """
    absolute = Path(config_path).resolve()
    if package_dir is None:
        return str(absolute)
    return Path(os.path.relpath(absolute, Path(package_dir).resolve())).as_posix()


def local_config_path(record: SourceRecord, package_dir: Path) -> Path:
    """The recorded local config path, resolved against the package folder if relative."""
    return Path(package_dir) / record.path


def source_record(
    source: ResolvedSource,
    requested_revision: str | None = None,
    package_dir: Path | None = None,
) -> SourceRecord:
    """What to record about a resolved source (see :func:`recorded_path` for local paths)."""
    return SourceRecord(
        kind=source.kind,
        repo_id=source.repo_id,
        requested_revision=requested_revision,
        revision=source.revision,
        path=recorded_path(source.path, package_dir) if source.kind == "local" else None,
        config_sha256=source.sha256,
    )


def record_files(
    source: ResolvedSource,
    spec: ArchSpec,
    package_name: str,
    files: dict[str, str],
    *,
    requested_revision: str | None = None,
    package_dir: Path | None = None,
) -> dict[str, str]:
    """The ``.scaffold/`` files to write with a rendered package: ``{relpath: text}``.

    ``files`` is the render (``{relpath: text}``, relative to the package folder); it is recorded
    in ``base.json`` as the base of the next merge. ``requested_revision`` is the ``--revision``
    the user passed, if any; ``package_dir`` is where the package is written (local config paths
    are recorded relative to it). Returns only the record files; add them to the render before
    writing.
    """
    generator = {
        "generator": GENERATOR_NAME,
        "version": __version__,
        "package_name": package_name,
        "record_format": RECORD_FORMAT,
    }
    return {
        SOURCE_FILE: _json_text(asdict(source_record(source, requested_revision, package_dir))),
        SPEC_FILE: _json_text(spec_dict(spec)),
        GENERATOR_FILE: _json_text(generator),
        BASE_FILE: base_json(files),
        GITATTRIBUTES_FILE: GITATTRIBUTES,
    }


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def base_json(files: Mapping[str, str]) -> str:
    """``base.json``'s text for a render: ``{relpath: {"sha256", "text"}}``, record excluded."""
    return _json_text(
        {
            relpath: {"sha256": _sha256(text), "text": text}
            for relpath, text in files.items()
            if not is_record_path(relpath)
        }
    )


def is_record_path(relpath: str) -> bool:
    """True for paths inside the ``.scaffold/`` record."""
    return PurePosixPath(relpath).parts[:1] == (RECORD_DIR,)


def read_text(path: Path) -> str:
    """A file's text exactly as stored (UTF-8, line ends untouched)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return handle.read()


def _read_json(package_dir: Path, relpath: str) -> dict[str, Any]:
    """Read one JSON object of the record, or raise a one-line ScaffoldError."""
    path = package_dir / relpath
    try:
        data = json.loads(read_text(path))
    except FileNotFoundError:
        raise ScaffoldError(
            f"{path} is missing: '{package_dir}' has no complete regeneration record; "
            "was it made by 'scaffold new-model'?"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ScaffoldError(f"cannot read regeneration record {path}: {error}") from None
    if not isinstance(data, dict):
        raise ScaffoldError(f"regeneration record {path} must hold a JSON object")
    return data


_REQUIRED_STRINGS = ("kind", "config_sha256")  # source.json's other fields may be null


def _json_type(value: Any) -> str:
    """The JSON type of a value read from JSON, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), "a value")


def _source_from_json(data: dict[str, Any], path: Path) -> SourceRecord:
    """Validate ``source.json`` data into a SourceRecord."""
    fields = SourceRecord.__dataclass_fields__
    missing = [name for name in fields if name not in data]
    if missing:
        raise ScaffoldError(f"regeneration record {path} lacks {', '.join(missing)}")
    for name in fields:
        value, optional = data[name], name not in _REQUIRED_STRINGS
        if not (isinstance(value, str) or (optional and value is None)):
            kind = "a string or null" if optional else "a string"
            raise ScaffoldError(
                f"regeneration record {path}: {name} must be {kind}, not {_json_type(value)}; "
                "restore the record from version control"
            )
    record = SourceRecord(**{name: data[name] for name in fields})
    if record.kind not in SOURCE_KINDS:
        raise ScaffoldError(f"regeneration record {path}: unknown source kind '{record.kind}'")
    if record.kind == "local" and not record.path:
        raise ScaffoldError(f"regeneration record {path}: a local source needs its path")
    if record.kind != "local" and not record.repo_id:
        raise ScaffoldError(f"regeneration record {path}: a {record.kind} source needs a repo_id")
    return record


def _check_relpath(relpath: str, path: Path) -> None:
    """Refuse a base entry that is not a plain relative path to a package file."""
    pure = PurePosixPath(relpath)
    if (
        not relpath
        or "\\" in relpath
        or pure.is_absolute()
        or pure.as_posix() != relpath
        or ".." in pure.parts
        or is_record_path(relpath)
    ):
        raise ScaffoldError(
            f"regeneration record {path}: '{relpath}' is not a path of a file in the package"
        )


def _read_base(package_dir: Path) -> dict[str, str]:
    """``base.json``, validated: every entry a package path -> text whose sha256 matches."""
    path = package_dir / BASE_FILE
    base = {}
    for relpath, entry in sorted(_read_json(package_dir, BASE_FILE).items()):
        _check_relpath(relpath, path)
        if (
            not isinstance(entry, dict)
            or set(entry) != {"sha256", "text"}
            or not all(isinstance(value, str) for value in entry.values())
        ):
            raise ScaffoldError(
                f'regeneration record {path}: the entry for {relpath} must be {{"sha256": '
                f'string, "text": string}}'
            )
        try:
            intact = _sha256(entry["text"]) == entry["sha256"]
        except UnicodeEncodeError:
            intact = False
        if not intact:
            raise ScaffoldError(
                f"regeneration record {path}: the text recorded for {relpath} does not match "
                "its sha256; restore base.json from version control"
            )
        base[relpath] = entry["text"]
    return base


def _read_pristine(package_dir: Path) -> tuple[dict[str, str], list[str]]:
    """Record format 1: every file of ``.scaffold/pristine/``, by path relative to the package.

    Returns the rendered files and the bytecode caches (``__pycache__/``) Python tools such as
    ``compileall`` wrote among them: never the base, but removed with it.
    """
    root = package_dir / LEGACY_PRISTINE_DIR
    if root.is_symlink() or not root.is_dir():
        raise ScaffoldError(f"regeneration record {root} must be a folder, not a link")
    pristine, caches = {}, []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise ScaffoldError(f"regeneration record holds a symbolic link, {path}; remove it")
        if path.is_file():
            relpath = path.relative_to(root).as_posix()
            if "__pycache__" in PurePosixPath(relpath).parts:
                caches.append(relpath)
                continue
            try:
                pristine[relpath] = read_text(path)
            except (OSError, UnicodeDecodeError) as error:
                raise ScaffoldError(f"cannot read pristine file {path}: {error}") from None
    return pristine, caches


def _read_any_base(package_dir: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """The base of the merge, and the format-1 record files that hold it (none for base.json)."""
    legacy = package_dir / LEGACY_PRISTINE_DIR
    if not (legacy.exists() or legacy.is_symlink()):
        return _read_base(package_dir), ()
    if (package_dir / BASE_FILE).exists():
        raise ScaffoldError(
            f"'{package_dir}' holds both {BASE_FILE} and the older {LEGACY_PRISTINE_DIR}/; "
            f"keep the current one (usually {BASE_FILE}) and remove the other"
        )
    pristine, caches = _read_pristine(package_dir)
    return pristine, tuple(f"{LEGACY_PRISTINE_DIR}/{relpath}" for relpath in [*pristine, *caches])


def _check_generator(generator: dict[str, Any], path: Path) -> None:
    """Validate ``generator.json``: a package name new-model would accept, a known format."""
    from scaffolder.source import validate_package_name

    name = generator.get("package_name")
    if not isinstance(name, str):
        raise ScaffoldError(f"regeneration record {path} lacks a valid package_name")
    try:
        validate_package_name(name)
    except ScaffoldError as error:
        raise ScaffoldError(
            f"regeneration record {path}: the recorded package_name cannot be rendered: {error} "
            "(then generate the package anew with scaffold new-model --name)"
        ) from None
    record_format = generator.get("record_format", RECORD_FORMAT)
    if isinstance(record_format, bool) or not isinstance(record_format, int):
        raise ScaffoldError(
            f"regeneration record {path}: record_format must be an integer, not "
            f"{_json_type(record_format)}; restore the record from version control"
        )
    if record_format > RECORD_FORMAT:
        raise ScaffoldError(
            f"regeneration record {path} has format {record_format}, newer than this "
            f"model-scaffolder reads ({RECORD_FORMAT}); upgrade model-scaffolder"
        )
    for field in ("generator", "version"):
        if not isinstance(generator.get(field, ""), str):
            raise ScaffoldError(
                f"regeneration record {path}: {field} must be a string, not "
                f"{_json_type(generator[field])}; restore the record from version control"
            )


def read_record(package_dir: Path) -> Record:
    """Read a package's ``.scaffold/`` record; a missing or broken one is a ScaffoldError.

    A format-1 record (``.scaffold/pristine/``) reads as well: its files are the base, and
    :attr:`Record.legacy_files` names them for the next record write to remove.
    """
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        raise ScaffoldError(f"package folder '{package_dir}' does not exist")
    source = _source_from_json(_read_json(package_dir, SOURCE_FILE), package_dir / SOURCE_FILE)
    generator = _read_json(package_dir, GENERATOR_FILE)
    _check_generator(generator, package_dir / GENERATOR_FILE)
    spec = _read_json(package_dir, SPEC_FILE)
    base, legacy_files = _read_any_base(package_dir)
    return Record(
        source=source, spec=spec, generator=generator, base=base, legacy_files=legacy_files
    )
