"""Render a model package from the cookiecutter template in ``templates/package``.

The repository's ``templates/`` folder is installed as the package ``scaffolder.templates``
(setup.py), in the wheel and the editable install alike; :func:`template_root` finds it with
``importlib.resources``, never relative to this file.

``render_package`` returns ``{relative path: text}`` in memory (regeneration merges against it);
``write_package`` moves a finished render into place atomically.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2.ext import Extension

from scaffolder import __version__, cache, staging
from scaffolder.errors import ScaffoldError
from scaffolder.literals import (
    comment,
    ordinal,
    prose,
    py_literal,
    toml_literal,
    yaml_literal,
)
from scaffolder.spec import ArchSpec
from scaffolder.views import build_views

TEMPLATE_PACKAGE = "scaffolder.templates"  # the repository's templates/ folder, as package data
TEMPLATE_DIR = "package"  # the cookiecutter template inside it


@dataclass(frozen=True)
class SourceInfo:
    """Where the config came from, as the generated README and record state it."""

    description: str
    repo_id: str | None
    revision: str | None
    config_sha256: str
    config_text: str


class LiteralsExtension(Extension):
    """Jinja filters ``py``, ``toml`` and ``yaml`` (the only way config values enter a file),
    ``prose`` and ``comment_lines`` (wrapped text); see :mod:`scaffolder.literals`."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.filters.update(
            py=py_literal,
            toml=toml_literal,
            yaml=yaml_literal,
            prose=prose,
            comment_lines=comment,
            ordinal=ordinal,
        )


# ---------------------------------------------------------------- rendering


def class_prefix(spec: ArchSpec) -> str:
    """CamelCase family name used in class names, e.g. ``Llama``."""
    return "".join(part.capitalize() for part in spec.family.split("_"))


def build_context(spec: ArchSpec, package_name: str, source: SourceInfo) -> dict[str, Any]:
    """The cookiecutter context: validated values only."""
    return {
        "package_name": package_name,
        "display_name": source.repo_id or package_name,
        "hf_repo_id": source.repo_id or "",
        "source_description": source.description,
        "revision": source.revision or "",
        "config_sha256": source.config_sha256,
        "generator_version": __version__,
        "class_prefix": class_prefix(spec),
        "spec": spec.to_context(),
        "views": build_views(spec, package_name),
        "_extensions": ["scaffolder.render.LiteralsExtension"],
    }


def render_package(spec: ArchSpec, package_name: str, source: SourceInfo) -> dict[str, str]:
    """Render the package in memory: ``{path relative to the package folder: text}``."""
    from cookiecutter.generate import generate_files

    context = {"cookiecutter": build_context(spec, package_name, source)}
    bytecode_cache = cache.jinja_bytecode_cache()  # compiled templates; same output, faster
    if bytecode_cache is not None:
        context["cookiecutter"]["_jinja2_env_vars"] = {"bytecode_cache": bytecode_cache}
    with template_root() as root, tempfile.TemporaryDirectory(prefix="scaffold-render-") as tmp:
        project = Path(
            generate_files(
                repo_dir=str(root),
                context=context,
                output_dir=tmp,
                accept_hooks=False,
            )
        )
        (project / "hf_config.json").write_text(source.config_text)
        for relpath in context["cookiecutter"]["views"]["infra"].omitted_files:
            (project / relpath).unlink()  # a file this model does not have
        format_python(project, package_name)
        files = {
            path.relative_to(project).as_posix(): path.read_text()
            for path in sorted(project.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts
        }
    return files


@contextmanager
def template_root() -> Iterator[Path]:
    """The cookiecutter template folder as a real directory, for as long as the block runs."""
    try:
        template = resources.files(TEMPLATE_PACKAGE) / TEMPLATE_DIR
    except ModuleNotFoundError:
        raise RuntimeError(
            f"the package data {TEMPLATE_PACKAGE} is not installed; reinstall model-scaffolder "
            "(in a checkout: pip install -e .)"
        ) from None
    with resources.as_file(template) as root:
        yield root


def ruff_args(package_name: str) -> list[str]:
    """The style generated packages follow: ruff defaults, 100 columns, our imports first-party."""
    first_party = f"lint.isort.known-first-party = ['runtime', {package_name!r}]"
    return ["--isolated", "--no-cache", "--line-length", "100", "--config", first_party]


def format_python(folder: Path, package_name: str) -> None:
    """Sort imports and format generated Python with ruff (deterministic, ruff-clean)."""
    ruff = Path(sys.executable).with_name("ruff")
    executable = str(ruff) if ruff.exists() else "ruff"
    for command in (
        [executable, "check", "--fix", "--select", "I", "--quiet", *ruff_args(package_name)],
        [executable, "format", "--quiet", *ruff_args(package_name)],
    ):
        result = subprocess.run([*command, str(folder)], capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise RuntimeError(f"ruff failed on the rendered package: {detail}")


# ---------------------------------------------------------------- writing


# Caches that tools write inside a package (running its tests, linting it): not the user's work.
CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"})


def write_package(
    files: Mapping[str, str], destination: Path, *, force: bool = False
) -> list[Path]:
    """Write ``files`` under ``destination`` atomically: all of them, or nothing.

    The tree is built in a sibling staging workspace and renamed into place, holding the
    package's lock throughout (:mod:`scaffolder.staging`): a second run on the same package is
    refused while this one writes. ``destination`` itself is never followed: a symbolic link
    there is refused. With ``force`` an existing package is replaced only after the new one is
    complete, and only if it is one that model-scaffolder wrote (a ``.scaffold/`` record)
    holding no file the record does not list (caches aside): nothing the tool did not write is
    ever deleted. A write that fails (permissions, a full disk) leaves nothing behind and raises
    a one-line ScaffoldError. Returns the workspaces of interrupted runs removed on the way.
    """
    destination = Path(destination)
    parent = destination.parent.resolve()  # the output folder may be a link; the package not
    destination = parent / destination.name
    _check_destination(destination, force)
    created = [folder for folder in (parent, *parent.parents) if not folder.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(created)
        raise ScaffoldError(
            f"cannot create output folder {parent}: {exc.strerror or exc}; choose another --output"
        ) from None
    try:
        with staging.package_lock(destination):
            _check_destination(destination, force)  # another run may have written it meanwhile
            removed = staging.remove_stale_workspaces(destination)
            _write_and_swap(files, destination)
    except OSError as exc:
        _remove_empty(created)
        raise ScaffoldError(
            f"cannot write the package to {destination}: {exc.strerror or exc}; nothing was "
            "written: free space, fix the folder's permissions or choose another --output"
        ) from None
    except BaseException:
        _remove_empty(created)
        raise
    return removed


def _check_destination(destination: Path, force: bool) -> None:
    """Refuse a package path that is a link or a file, or that exists without ``force``."""
    if destination.is_symlink():
        raise ScaffoldError(
            f"package path {destination} is a symbolic link; new-model never writes through "
            "one, --force or not: remove the link or choose another --name or --output"
        )
    if destination.exists() and not destination.is_dir():
        raise ScaffoldError(
            f"package path {destination} is a file, not a package folder; --force replaces "
            "only a package model-scaffolder wrote: move the file or choose another --name "
            "or --output"
        )
    if destination.exists():
        if not force:
            raise ScaffoldError(
                f"output folder {destination} already exists; pass --force to replace it"
            )
        check_replaceable(destination)


def _write_and_swap(files: Mapping[str, str], destination: Path) -> None:
    """Build the package in a staging workspace beside ``destination``, then swap it there.

    An existing package (``--force``) is exchanged with the new one in one step where the
    system allows it, so the package path always holds the old package or the new one.
    """
    workspace = staging.make_workspace(destination, "new-model")
    staged = workspace / staging.STAGED
    try:
        staged.mkdir()
        for relpath, text in files.items():
            target = staged / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        if destination.exists():
            staging.swap_in(destination, staged)  # the old package ends up in the workspace
        else:
            os.replace(staged, destination)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def check_replaceable(package: Path) -> None:
    """Raise a ScaffoldError unless ``--force`` may replace the folder ``package``.

    It must hold a model-scaffolder record, and no file (or link) the record does not list,
    apart from caches (:data:`CACHE_DIRS`).
    """
    from scaffolder.record import GENERATOR_NAME, RECORD_FILES, read_record

    try:
        record = read_record(package)
        ours = record.generator.get("generator") == GENERATOR_NAME
    except ScaffoldError as error:
        ours, reason = False, f" ({error})"
    else:
        reason = ""
    if not ours:
        raise ScaffoldError(
            f"{package} is not a package model-scaffolder wrote (no .scaffold/ record of ours"
            f"{reason}); --force replaces only such a package: remove the folder yourself or "
            "choose another --name or --output"
        )
    known = {*record.base, *RECORD_FILES, *record.legacy_files}
    foreign = [relpath for relpath in _package_entries(package) if relpath not in known]
    if foreign:
        listed = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise ScaffoldError(
            f"{package} holds files model-scaffolder did not write ({listed}), and --force "
            "never deletes those: move them out, or keep them and apply the config with "
            f"'scaffold regenerate {package} --config <config.json>'"
        )


def _package_entries(package: Path) -> list[str]:
    """Files and links under ``package`` (links never followed), caches left out, sorted."""
    entries = []
    for folder, dirnames, filenames in os.walk(package):
        here = Path(folder)
        for name in list(dirnames):
            if name in CACHE_DIRS and not (here / name).is_symlink():
                dirnames.remove(name)
            elif (here / name).is_symlink():
                entries.append((here / name).relative_to(package).as_posix())
        entries.extend((here / name).relative_to(package).as_posix() for name in filenames)
    return sorted(entries)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this run created, deepest first, where they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
