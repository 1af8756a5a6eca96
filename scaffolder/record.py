"""The regeneration record a generated package keeps under ``.scaffold/``.

Small, human-readable files, written next to the package's own files:

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
``.scaffold/pristine/<relpath>``
    the file exactly as the generator rendered it: the base of the next three-way merge.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from scaffolder import __version__
from scaffolder.errors import ScaffoldError

if TYPE_CHECKING:
    from scaffolder.source import ResolvedSource
    from scaffolder.spec import ArchSpec

RECORD_DIR = ".scaffold"
PRISTINE_DIR = f"{RECORD_DIR}/pristine"
SOURCE_FILE = f"{RECORD_DIR}/source.json"
SPEC_FILE = f"{RECORD_DIR}/spec.json"
GENERATOR_FILE = f"{RECORD_DIR}/generator.json"
GENERATOR_NAME = "model-scaffolder"
RECORD_FORMAT = 1
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
    pristine: dict[str, str]

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

    ``files`` is the render (``{relpath: text}``, relative to the package folder); each one is
    recorded as its pristine copy. ``requested_revision`` is the ``--revision`` the user passed,
    if any; ``package_dir`` is where the package is written (local config paths are recorded
    relative to it). Returns only the record files; add them to the render before writing.
    """
    generator = {
        "generator": GENERATOR_NAME,
        "version": __version__,
        "package_name": package_name,
        "record_format": RECORD_FORMAT,
    }
    record = {
        SOURCE_FILE: _json_text(asdict(source_record(source, requested_revision, package_dir))),
        SPEC_FILE: _json_text(spec_dict(spec)),
        GENERATOR_FILE: _json_text(generator),
    }
    for relpath in sorted(files):
        if is_record_path(relpath):
            continue
        record[f"{PRISTINE_DIR}/{relpath}"] = files[relpath]
    return record


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


def _source_from_json(data: dict[str, Any], path: Path) -> SourceRecord:
    """Validate ``source.json`` data into a SourceRecord."""
    fields = SourceRecord.__dataclass_fields__
    missing = [name for name in fields if name not in data]
    if missing:
        raise ScaffoldError(f"regeneration record {path} lacks {', '.join(missing)}")
    record = SourceRecord(**{name: data[name] for name in fields})
    if record.kind not in SOURCE_KINDS:
        raise ScaffoldError(f"regeneration record {path}: unknown source kind '{record.kind}'")
    if record.kind == "local" and not record.path:
        raise ScaffoldError(f"regeneration record {path}: a local source needs its path")
    if record.kind != "local" and not record.repo_id:
        raise ScaffoldError(f"regeneration record {path}: a {record.kind} source needs a repo_id")
    return record


def _read_pristine(package_dir: Path) -> dict[str, str]:
    """Every pristine file of the record, by path relative to the package."""
    root = package_dir / PRISTINE_DIR
    if not root.is_dir():
        raise ScaffoldError(f"{root} is missing: '{package_dir}' has no pristine render recorded")
    pristine = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise ScaffoldError(f"regeneration record holds a symbolic link, {path}; remove it")
        if path.is_file():
            try:
                pristine[path.relative_to(root).as_posix()] = read_text(path)
            except (OSError, UnicodeDecodeError) as error:
                raise ScaffoldError(f"cannot read pristine file {path}: {error}") from None
    return pristine


def read_record(package_dir: Path) -> Record:
    """Read a package's ``.scaffold/`` record; a missing or broken one is a ScaffoldError."""
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        raise ScaffoldError(f"package folder '{package_dir}' does not exist")
    source = _source_from_json(_read_json(package_dir, SOURCE_FILE), package_dir / SOURCE_FILE)
    generator = _read_json(package_dir, GENERATOR_FILE)
    name = generator.get("package_name")
    if not isinstance(name, str) or not name.isidentifier():
        raise ScaffoldError(
            f"regeneration record {package_dir / GENERATOR_FILE} lacks a valid package_name"
        )
    return Record(
        source=source,
        spec=_read_json(package_dir, SPEC_FILE),
        generator=generator,
        pristine=_read_pristine(package_dir),
    )
