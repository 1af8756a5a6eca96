"""Resolve a SOURCE argument to a config.json dict and say where it came from.

SOURCE is a local config file (any name), a local model folder holding ``config.json``, or a
Hugging Face repo id. Resolution order: local path -> Hugging Face cache -> hub download (unless
``HF_HUB_OFFLINE``) -> the snapshots bundled in ``scaffolder/bundled_configs/<org>--<name>/``.

Only ``config.json`` is ever read or downloaded, and nothing in it is executed: a config with
``auto_map`` (remote code) is returned as plain data for the spec layer to judge.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Literal

import huggingface_hub
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import EntryNotFoundError, HFValidationError, HTTPError
from huggingface_hub.utils import validate_repo_id

from scaffolder.errors import ScaffoldError

SourceKind = Literal["local", "hf-cache", "hub", "bundled"]

CONFIG_FILENAME = "config.json"
BUNDLED_CONFIGS_DIR = Path(__file__).resolve().parent / "bundled_configs"
MAX_CONFIG_BYTES = 10 * 1024 * 1024
MAX_CONFIG_DEPTH = 32  # objects and lists within one another; hub configs use a few levels
# Errors a hub download can raise for a missing repo, revision or file, or a network failure.
HUB_DOWNLOAD_ERRORS = (OSError, EntryNotFoundError, HFValidationError, HTTPError)

_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
_COMMIT_HASH = re.compile(r"[0-9a-f]{40}")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
# Top-level modules a generated package must not shadow when imported from its parent folder.
_RESERVED_PACKAGE_NAMES = frozenset(sys.stdlib_module_names) | {
    "cookiecutter",
    "datasets",
    "huggingface_hub",
    "jinja2",
    "numpy",
    "pytest",
    "rich",
    "runtime",
    "safetensors",
    "scaffolder",
    "tensorboard",
    "test",
    "tests",
    "tokenizers",
    "torch",
    "torchtitan",
    "transformers",
    "typer",
    "yaml",
}


@dataclass(frozen=True)
class ResolvedSource:
    """A config.json read from one source, with enough detail to record and reproduce it."""

    config: dict
    kind: SourceKind
    repo_id: str | None
    revision: str | None
    path: Path
    sha256: str
    description: str


# ---------------------------------------------------------------------------------------------
# Public API


def resolve_source(source: str, revision: str | None = None) -> ResolvedSource:
    """Resolve SOURCE (config file, model folder, or hub repo id) to its config.json.

    ``revision`` (a branch, tag or commit hash) applies to hub repo ids only. Raises
    ``ScaffoldError`` with a one-line message for any bad input or unavailable source.
    """
    if not source or not source.strip():
        raise ScaffoldError(
            "SOURCE is empty; pass a config.json path, a model folder, or 'org/name'"
        )
    if revision is not None:
        _check_revision(revision)
    local_path = _existing_path(source)
    if local_path is not None:
        return _resolve_local(local_path, revision)
    if _looks_like_path(source):
        raise ScaffoldError(
            f"SOURCE '{source}' does not exist; pass an existing config.json path or model folder"
        )
    _check_repo_id(source)
    return _resolve_repo(source, revision)


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, read from the environment at call time.

    Follows huggingface_hub's precedence: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub,
    XDG_CACHE_HOME/huggingface/hub, then ~/.cache/huggingface/hub.
    """
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return _expand(explicit)
    hf_home = os.environ.get("HF_HOME")
    if not hf_home:
        xdg_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        hf_home = os.path.join(xdg_cache, "huggingface")
    return _expand(hf_home) / "hub"


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) forbids hub downloads right now.

    The environment is read at call time; huggingface_hub's import-time constant is the fallback.
    """
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    if not any(name in os.environ for name in names):
        return bool(hf_constants.HF_HUB_OFFLINE)
    value = os.environ.get(names[0]) or os.environ.get(names[1]) or ""
    return value.strip().upper() in _TRUE_VALUES


def bundled_repo_ids() -> list[str]:
    """Repo ids that have a config.json snapshot bundled with the package, sorted."""
    if not BUNDLED_CONFIGS_DIR.is_dir():
        return []
    return sorted(
        folder.name.replace("--", "/", 1)
        for folder in BUNDLED_CONFIGS_DIR.iterdir()
        if (folder / CONFIG_FILENAME).is_file()
    )


def package_name_from_source(source: str | ResolvedSource) -> str:
    """Derive a snake_case Python package name from a repo id, folder, or file name.

    ``TinyLlama/TinyLlama-1.1B-Chat-v1.0`` -> ``tinyllama_1_1b_chat_v1_0``; a file named
    config.json takes its folder's name. Leading digits get a ``model_`` prefix; keywords and
    names that would shadow common modules get a ``_model`` suffix.
    """
    stem = _source_stem(source)
    name = re.sub(r"[^0-9a-zA-Z]+", "_", stem).strip("_").lower() or "model"
    if name[0].isdigit():
        name = f"model_{name}"
    if keyword.iskeyword(name) or name in _RESERVED_PACKAGE_NAMES:
        name = f"{name}_model"
    return validate_package_name(name)


def validate_package_name(name: str) -> str:
    """Return ``name`` if it is a safe package name, else raise ``ScaffoldError``.

    Safe means: an ASCII Python identifier, not a keyword, no path parts that could escape the
    output folder, and not the name of a module the generated code or its tests import.
    """
    if "/" in name or "\\" in name or ".." in name or name in {"", "."}:
        raise ScaffoldError(
            f"package name '{name}' would escape the output folder; use a plain Python "
            "identifier such as 'my_model'"
        )
    if not (name.isascii() and name.isidentifier()):
        raise ScaffoldError(
            f"package name '{name}' is not a Python identifier; use letters, digits and "
            "underscores, not starting with a digit (e.g. 'my_model')"
        )
    if keyword.iskeyword(name):
        raise ScaffoldError(
            f"package name '{name}' is a Python keyword; choose another, e.g. '{name}_model'"
        )
    if name in _RESERVED_PACKAGE_NAMES:
        raise ScaffoldError(
            f"package name '{name}' would shadow the module '{name}'; choose another, "
            f"e.g. '{name}_model'"
        )
    return name


# ---------------------------------------------------------------------------------------------
# Local files and folders


def _resolve_local(path: Path, revision: str | None) -> ResolvedSource:
    """Read a local config file, or the config.json inside a local model folder."""
    if revision is not None:
        raise ScaffoldError(
            f"--revision '{revision}' applies to hub repo ids, not the local path '{path}'; "
            "drop --revision"
        )
    if path.is_dir():
        config_path = path / CONFIG_FILENAME
        if not config_path.is_file():
            raise ScaffoldError(
                f"folder '{path}' has no {CONFIG_FILENAME}; pass the config file itself "
                "or a model folder that holds one"
            )
        what = "local folder"
    else:
        config_path = path
        what = "local file"
    config, digest = read_config_file(config_path)
    return ResolvedSource(
        config=config,
        kind="local",
        repo_id=None,
        revision=None,
        path=config_path,
        sha256=digest,
        description=f"{what} {config_path}",
    )


def _existing_path(source: str) -> Path | None:
    """SOURCE as an existing local path, or None (also for strings no OS accepts as a path)."""
    path = Path(source).expanduser()
    try:
        return path if path.exists() else None
    except (OSError, ValueError):
        return None


def _looks_like_path(source: str) -> bool:
    """Whether a missing SOURCE was clearly meant as a file path rather than a repo id."""
    return (
        source.startswith(("/", "./", "../", "~", ".\\"))
        or source.lower().endswith(".json")
        or "\\" in source
    )


# ---------------------------------------------------------------------------------------------
# Hub repo ids: cache, download, bundled snapshots


def _resolve_repo(repo_id: str, revision: str | None) -> ResolvedSource:
    """Try the HF cache, then a hub download (when online), then a bundled snapshot."""
    cache_dir = hub_cache_dir()
    cached = _from_cache(repo_id, revision, cache_dir)
    if cached is not None:
        return cached
    not_cached = f"not in the Hugging Face cache {cache_dir}"
    if hub_offline():
        unavailable = f"{not_cached}, and HF_HUB_OFFLINE is set"
        advice = "unset HF_HUB_OFFLINE to download it, or pass a local config.json path"
    else:
        downloaded, download_error = _from_hub(repo_id, revision, cache_dir)
        if downloaded is not None:
            return downloaded
        unavailable = f"{not_cached}, and {download_error}"
        advice = "check the repo id, your network and hub login, or pass a local config.json path"
    return _from_bundled(repo_id, revision, unavailable, advice)


def _from_cache(repo_id: str, revision: str | None, cache_dir: Path) -> ResolvedSource | None:
    """Read config.json from the local HF cache, or return None when it is not cached."""
    found = huggingface_hub.try_to_load_from_cache(
        repo_id, CONFIG_FILENAME, cache_dir=cache_dir, revision=revision
    )
    if not isinstance(found, str) or not os.path.isfile(found):
        return None
    return _repo_source(
        Path(found), "hf-cache", repo_id, revision, f"Hugging Face cache {cache_dir}"
    )


def _from_hub(
    repo_id: str, revision: str | None, cache_dir: Path
) -> tuple[ResolvedSource | None, str]:
    """Download config.json (only) from the hub; return (source, "") or (None, reason)."""
    try:
        downloaded = huggingface_hub.hf_hub_download(
            repo_id=repo_id, filename=CONFIG_FILENAME, revision=revision, cache_dir=cache_dir
        )
    except HUB_DOWNLOAD_ERRORS as error:
        reason = _first_line(str(error)) or type(error).__name__
        return None, f"the hub download failed ({type(error).__name__}: {reason})"
    source = _repo_source(Path(downloaded), "hub", repo_id, revision, "Hugging Face hub")
    return source, ""


def _from_bundled(
    repo_id: str, revision: str | None, unavailable: str, advice: str
) -> ResolvedSource:
    """Read the config.json snapshot bundled with the package for ``repo_id``.

    ``unavailable`` says why the cache and hub were not used; ``advice`` says what to do when
    no snapshot is bundled either.
    """
    config_path = _bundled_config_path(repo_id)
    if config_path is None:
        bundled = ", ".join(bundled_repo_ids()) or "none"
        raise ScaffoldError(
            f"repo '{repo_id}' is {unavailable}, and no snapshot is bundled (bundled: {bundled}); "
            f"{advice}"
        )
    if revision not in (None, "main"):
        raise ScaffoldError(
            f"revision '{revision}' of '{repo_id}' is {unavailable}; the bundled snapshot has "
            "no revisions, so drop --revision or make that revision available"
        )
    config, digest = read_config_file(config_path)
    bundled_id = config_path.parent.name.replace("--", "/", 1)
    return ResolvedSource(
        config=config,
        kind="bundled",
        repo_id=bundled_id,
        revision=None,
        path=config_path,
        sha256=digest,
        description=f"bundled snapshot of {bundled_id} (hub and cache unavailable: {unavailable})",
    )


def _bundled_config_path(repo_id: str) -> Path | None:
    """The bundled config.json for ``repo_id`` (matched case-insensitively, as the hub does)."""
    wanted = repo_id.lower()
    for bundled_id in bundled_repo_ids():
        if bundled_id.lower() == wanted:
            return BUNDLED_CONFIGS_DIR / bundled_id.replace("/", "--", 1) / CONFIG_FILENAME
    return None


def _repo_source(
    config_path: Path, kind: SourceKind, repo_id: str, revision: str | None, where: str
) -> ResolvedSource:
    """Build a ResolvedSource for a config.json inside an HF cache snapshot folder."""
    config, digest = read_config_file(config_path)
    snapshot = config_path.parent.name
    commit = snapshot if _COMMIT_HASH.fullmatch(snapshot) else None
    asked = revision or "main"
    at = f"{asked} (commit {commit[:8]})" if commit and commit != asked else asked
    return ResolvedSource(
        config=config,
        kind=kind,
        repo_id=repo_id,
        revision=commit or revision,
        path=config_path,
        sha256=digest,
        description=f"{where}: {repo_id} at revision {at}",
    )


def _check_repo_id(source: str) -> None:
    """Raise ScaffoldError unless ``source`` follows huggingface_hub's repo-id rules."""
    try:
        validate_repo_id(source)
    except HFValidationError as error:
        raise ScaffoldError(
            f"SOURCE '{source}' is neither an existing file or folder nor a valid Hugging Face "
            f"repo id ({_validation_reason(error)}); pass a config.json path, a model folder, "
            "or 'org/name'"
        ) from None


def _check_revision(revision: str) -> None:
    """Raise ScaffoldError for a revision that is not a plausible branch, tag or commit."""
    parts = revision.split("/")
    if not _REVISION.fullmatch(revision) or ".." in parts or "" in parts:
        raise ScaffoldError(
            f"revision '{revision}' is not a valid branch, tag or commit hash; "
            "use e.g. 'main' or a 40-character commit hash"
        )


# ---------------------------------------------------------------------------------------------
# Reading config.json


def read_config_file(path: Path) -> tuple[dict, str]:
    """Read and strictly parse a config.json; return (config dict, sha256 hex of the bytes).

    Rejects unreadable or oversized files, non-UTF-8 text, malformed JSON, integers of more
    digits than Python converts, nesting deeper than :data:`MAX_CONFIG_DEPTH`, duplicate keys,
    and a top level that is not an object, with a one-line ``ScaffoldError``. ``NaN`` and
    ``Infinity``, which hub configs hold (and transformers reads), are read as floats: the
    field readers refuse a non-finite value where a field that is used needs a number.
    """
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ScaffoldError(
            f"config file '{path}' is not UTF-8 text (byte {error.start}); pass a config.json"
        ) from None
    config = _parse_json(text, path)
    if not isinstance(config, dict):
        raise ScaffoldError(
            f"config file '{path}' holds a JSON {type(config).__name__}, not an object; "
            "pass a config.json whose top level is {...}"
        )
    if _depth(config) > MAX_CONFIG_DEPTH:
        raise ScaffoldError(
            f"config file '{path}' is nested more than {MAX_CONFIG_DEPTH} levels deep, too "
            "deep for a config.json; fix the file"
        )
    return config, hashlib.sha256(data).hexdigest()


def _depth(value: object) -> int:
    """How deeply objects and lists nest in ``value`` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def _read_bytes(path: Path) -> bytes:
    """Read a config file's bytes, refusing unreadable or implausibly large files."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ScaffoldError(
                f"config file '{path}' is {size} bytes, too large for a config.json "
                f"(limit {MAX_CONFIG_BYTES}); pass the model's config.json"
            )
        return path.read_bytes()
    except OSError as error:
        raise ScaffoldError(
            f"cannot read config file '{path}': {error.strerror or error}; check the path"
        ) from None


class _JsonContentError(ValueError):
    """A JSON construct that parses but is not allowed in a config (duplicate keys)."""


def _parse_json(text: str, path: Path) -> object:
    """Parse JSON strictly, turning every problem into a one-line ScaffoldError."""
    try:
        return json.loads(text, parse_int=_parse_int, object_pairs_hook=_object_without_duplicates)
    except _IntegerTooLong as error:
        line, column = _position(text, error.digits)
        raise ScaffoldError(
            f"config file '{path}' holds an integer of {len(error.digits)} digits at line "
            f"{line} column {column}, more than Python reads "
            f"({sys.get_int_max_str_digits()}); fix the file"
        ) from None
    except json.JSONDecodeError as error:
        raise ScaffoldError(
            f"config file '{path}' is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}; fix the file"
        ) from None
    except _JsonContentError as error:
        raise ScaffoldError(f"config file '{path}': {error}; fix the file") from None
    except RecursionError:
        raise ScaffoldError(f"config file '{path}' is nested too deeply to be a config") from None


class _IntegerTooLong(Exception):
    """A JSON integer literal with more digits than Python converts."""

    def __init__(self, digits: str) -> None:
        super().__init__(f"{len(digits)} digits")
        self.digits = digits


def _parse_int(digits: str) -> int:
    """``parse_int`` hook: an int, unless it has more digits than Python converts."""
    limit = sys.get_int_max_str_digits()
    if limit and len(digits.lstrip("-")) > limit:
        raise _IntegerTooLong(digits)
    return int(digits)


def _position(text: str, literal: str) -> tuple[int, int]:
    """(line, column), both from 1, of the first occurrence of ``literal`` in ``text``."""
    offset = max(text.find(literal), 0)
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """``object_pairs_hook`` that refuses an object with the same key twice."""
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise _JsonContentError(f"key '{key}' appears twice in one object")
        result[key] = value
    return result


# ---------------------------------------------------------------------------------------------
# Small helpers


def _source_stem(source: str | ResolvedSource) -> str:
    """The human name of a source: repo name, folder name, or file stem."""
    if isinstance(source, ResolvedSource):
        if source.repo_id is not None:
            return source.repo_id.rsplit("/", 1)[-1]
        return _path_stem(source.path)
    path = _existing_path(source)
    if path is not None:
        return _path_stem(path.resolve())
    return _path_stem(PurePath(source.replace("\\", "/")))


def _path_stem(path: PurePath) -> str:
    """Folder name for a folder or a file named config.json; else the name less any ``.json``.

    Only ``.json`` is dropped, since model names often contain dots (``Llama-3.2-1B``).
    """
    if path.name.lower() == CONFIG_FILENAME:
        return path.parent.name
    if path.suffix.lower() == ".json":
        return path.stem
    return path.name


def _expand(value: str) -> Path:
    """Expand ``~`` and environment variables in a path setting."""
    return Path(os.path.expandvars(os.path.expanduser(value)))


def _validation_reason(error: HFValidationError) -> str:
    """huggingface_hub's repo-id complaint without the echoed value and API hints."""
    return re.split(r":\s*'", _first_line(str(error)), maxsplit=1)[0].rstrip(".")


def _first_line(text: str) -> str:
    """The first non-empty line of a message."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
