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

from scaffolder import __version__, cache
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
        "views": build_views(spec),
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


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_package(files: Mapping[str, str], destination: Path, *, force: bool = False) -> None:
    """Write ``files`` under ``destination`` atomically: all of them, or nothing.

    The tree is built in a sibling temp folder and renamed into place; with ``force`` an
    existing folder is replaced only after the new one is complete.
    """
    destination = destination.resolve()
    if destination.exists() and not force:
        raise ScaffoldError(
            f"output folder {destination} already exists; pass --force to replace it"
        )
    parent = destination.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScaffoldError(f"cannot create output folder {parent}: {exc.strerror}") from None
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=parent))
    staging.chmod(0o777 & ~_current_umask())
    try:
        for relpath, text in files.items():
            target = staging / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        if destination.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old.", dir=parent))
            backup.rmdir()
            os.replace(destination, backup)
            os.replace(staging, destination)
            shutil.rmtree(backup)
        else:
            os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
