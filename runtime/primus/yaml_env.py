"""Primus YAML files: ``${VAR}`` placeholders, ``extends`` chains and deep merges.

Every file may ``extends:`` other files (one name or a list), resolved relative to the file
itself: parents are merged in order, a later parent overriding an earlier one, and the file's own
keys win last. Dicts merge key by key; any other value (lists included) is replaced whole.
``${VAR}`` / ``${VAR:default}`` placeholders in string values are expanded from the environment
in each file before its parents are merged.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from runtime.primus.errors import PrimusConfigError

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
_INT_TEXT = re.compile(r"[-+]?\d+")
_FLOAT_TEXT = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?\d+[eE][-+]?\d+")


def _typed_scalar(text: str) -> Any:
    """Read ``text`` as an int, float or bool when it looks like one; otherwise keep the string."""
    if _INT_TEXT.fullmatch(text):
        return int(text)
    if _FLOAT_TEXT.fullmatch(text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _expand_string(text: str, environ: Mapping[str, str]) -> Any:
    """Substitute every placeholder in ``text``; type the result if ``text`` was one placeholder."""

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is None:
            raise PrimusConfigError(
                f"environment variable {name} is not set and ${{{name}}} has no default "
                f"(write ${{{name}:default}} or set {name})"
            )
        return default

    expanded = _PLACEHOLDER.sub(substitute, text)
    if _PLACEHOLDER.fullmatch(text):
        return _typed_scalar(expanded)
    return expanded


def expand_env(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Expand ``${VAR}`` and ``${VAR:default}`` in every string inside ``value``.

    Dicts and lists are walked recursively (dict keys are left alone); other values are returned
    unchanged. ``environ`` defaults to ``os.environ``. When a string is exactly one placeholder,
    the substituted text is typed back: ``"42"`` -> 42, ``"3e-4"`` -> 0.0003, ``"true"`` -> True;
    anything else stays a string. A placeholder inside a longer string is always substituted as
    text. ``${VAR}`` with VAR unset raises :class:`PrimusConfigError`.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {key: expand_env(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_env(item, env) for item in value]
    if isinstance(value, str):
        return _expand_string(value, env)
    return value


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return a new dict: ``base`` updated by ``override``, merging nested dicts key by key.

    Values that are not dicts on both sides (lists included) are replaced by ``override``'s.
    Neither input is modified.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors' aliases: an alias bomb (nested aliases of aliases) would make
    ``${VAR}`` expansion and every later walk of the tree exponential. Primus's presets use
    none."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*{event.anchor}) are not supported", event.start_mark
            )
        return super().compose_node(parent, index)


def _read_mapping(path: Path) -> dict[str, Any]:
    """Parse one YAML file that must hold a mapping (an empty file counts as ``{}``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PrimusConfigError(f"config file not found: {path}") from None
    except OSError as error:
        raise PrimusConfigError(f"{path}: cannot read ({error.strerror})") from None
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader without aliases
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise PrimusConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PrimusConfigError(
            f"{path}: expected a mapping at the top level, got {type(data).__name__}"
        )
    return data


def _parent_names(path: Path, data: dict[str, Any]) -> list[str]:
    """The file names listed under ``extends`` (absent -> none)."""
    parents = data.pop("extends", None)
    if parents is None:
        return []
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) and p for p in parents):
        raise PrimusConfigError(f"{path}: 'extends' must be a file name or a list of file names")
    return parents


def _resolve_file(path: Path, chain: tuple[Path, ...], environ: Mapping[str, str]) -> dict:
    """Resolve ``path`` and its ``extends`` ancestry; ``chain`` holds the files including it."""
    if path in chain:
        cycle = chain[chain.index(path) :] + (path,)
        raise PrimusConfigError("extends cycle: " + " -> ".join(str(p) for p in cycle))
    data = expand_env(_read_mapping(path), environ)
    merged: dict[str, Any] = {}
    for parent in _parent_names(path, data):
        parent_path = (path.parent / parent).resolve()
        if not parent_path.is_file():
            raise PrimusConfigError(f"{path}: extends '{parent}', but {parent_path} does not exist")
        merged = deep_merge(merged, _resolve_file(parent_path, chain + (path,), environ))
    return deep_merge(merged, data)


def load_yaml_with_extends(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Load a YAML mapping and resolve its ``extends`` chain recursively.

    ``extends`` is a file name or a list of them, relative to the file that names them. Parents
    merge in order (a later parent overrides an earlier one) and the file's own keys win last;
    nested dicts deep-merge. ``${VAR:default}`` placeholders are expanded with ``environ``
    (default ``os.environ``) in each file. The result has no ``extends`` key.

    Raises :class:`PrimusConfigError` for a missing file, invalid YAML, a non-mapping document, a
    malformed ``extends`` or a cycle (the message shows the cycle).
    """
    env = os.environ if environ is None else environ
    return _resolve_file(Path(path).resolve(), (), env)


def load_yaml_without_extends(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Load one YAML mapping without reading its parents: ``(its own keys, the names it extends)``.

    For a file whose ``extends`` live where they cannot be read (a package's model preset, whose
    parent is Primus's ``language_model.yaml``). Placeholders are expanded as in
    :func:`load_yaml_with_extends`; the result has no ``extends`` key. Raises
    :class:`PrimusConfigError` for a missing file, invalid YAML, a non-mapping document or a
    malformed ``extends``.
    """
    env = os.environ if environ is None else environ
    file = Path(path).resolve()
    data = expand_env(_read_mapping(file), env)
    parents = tuple(_parent_names(file, data))
    return data, parents
