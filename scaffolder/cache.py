"""Disk caches that make ``scaffold new-model`` fast without changing what it writes.

1. Configs as transformers normalized them (``normalized-configs/``). Importing transformers'
config classes (they import torch) is most of a cold ``new-model``: about 3 of 4 seconds. The
normalization is a pure function of the config.json dict, the model_type and transformers' code,
so its result can be kept:

- the key is the sha256 of the canonical JSON of the config and model_type, the installed
  transformers version plus the sha256 of its installed-files manifest (``RECORD``: it lists a
  hash of every installed file, so any reinstall that changes code changes the key), and
  ``FORMAT`` (bumped whenever the normalization code here or in ``scaffolder.spec`` changes what
  it returns);
- only successful normalizations are stored (as JSON that keeps tuples and non-string keys),
  and only when reading the entry back gives an equal dict, so a hit returns exactly what
  transformers returned for that input; a rejected
  config always goes through transformers and gets transformers' error;
- an unreadable entry is a miss (and is rewritten); entries are written atomically.

2. Compiled Jinja templates (``jinja/``): Jinja's own ``FileSystemBytecodeCache``, which checks
each entry against a hash of the template source, so an edited template is recompiled. Compiling
the package's templates is most of a warm render (about 0.7 of 1 second). The entries are code,
so the folder is used only while it is private to this user (``jinja_bytecode_cache``).

Where: ``$SCAFFOLD_CACHE_DIR``, else ``$XDG_CACHE_HOME/model-scaffolder``, else
``~/.cache/model-scaffolder``. ``SCAFFOLD_CACHE_DIR=off`` disables both.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

FORMAT = 1
DISABLED = {"off", "0", "false", "no"}


def cache_root() -> Path | None:
    """The cache folder, or None when disabled."""
    configured = os.environ.get("SCAFFOLD_CACHE_DIR")
    if configured is not None:
        if configured.strip().lower() in DISABLED or not configured.strip():
            return None
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "model-scaffolder"


def _normalized_dir() -> Path | None:
    root = cache_root()
    return None if root is None else root / "normalized-configs"


def jinja_bytecode_cache() -> Any:
    """A Jinja ``FileSystemBytecodeCache`` in the cache folder, or None (disabled, unwritable,
    or not private).

    Jinja unmarshals compiled code from these files and runs it, so whoever can write the folder
    could run code in the next ``new-model``: the folder is created private (0700) and used only
    while it is a real folder of this user that nobody else may write or enter.
    """
    root = cache_root()
    if root is None:
        return None
    from jinja2 import FileSystemBytecodeCache

    folder = root / "jinja"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return None
    if not private_folder(info):
        return None
    return FileSystemBytecodeCache(str(folder))


def private_folder(info: os.stat_result) -> bool:
    """A real directory owned by this user that group and others cannot write or enter."""
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_IXGRP | stat.S_IXOTH)
    )


@lru_cache(maxsize=1)
def transformers_fingerprint() -> str | None:
    """Installed transformers version and the sha256 of its file manifest (no import)."""
    try:
        dist = metadata.distribution("transformers")
    except metadata.PackageNotFoundError:
        return None
    record = dist.read_text("RECORD") or ""
    return f"{dist.version}:{hashlib.sha256(record.encode()).hexdigest()}"


def normalized_key(config: dict[str, Any], model_type: str) -> str | None:
    """The entry name for ``config``, or None if it cannot be keyed (then nothing is cached)."""
    fingerprint = transformers_fingerprint()
    if fingerprint is None:
        return None
    try:
        payload = json.dumps(
            {
                "format": FORMAT,
                "transformers": fingerprint,
                "model_type": model_type,
                "config": config,
            },
            sort_keys=True,
            allow_nan=False,
        )
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(payload.encode()).hexdigest()


_TUPLE, _ITEMS = "__tuple__", "__dict_items__"


def _encode(value: Any) -> Any:
    """JSON-ready form that keeps tuples and non-string dict keys (``id2label`` has int keys)."""
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not {_TUPLE, _ITEMS} & value.keys():
            return {k: _encode(v) for k, v in value.items()}
        return {_ITEMS: [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ITEMS}:
            return {_hashable(_decode(k)): _decode(v) for k, v in value[_ITEMS]}
        if set(value) == {_TUPLE}:
            return tuple(_decode(v) for v in value[_TUPLE])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def load_normalized(key: str | None) -> dict[str, Any] | None:
    """The cached normalized config for ``key``, or None (miss, disabled or unreadable)."""
    folder = _normalized_dir()
    if key is None or folder is None:
        return None
    try:
        entry = json.loads((folder / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    normalized = _decode(entry.get("normalized"))
    return normalized if isinstance(normalized, dict) else None


def store_normalized(key: str | None, normalized: dict[str, Any]) -> None:
    """Keep ``normalized`` under ``key`` if reading it back gives an equal dict."""
    folder = _normalized_dir()
    if key is None or folder is None:
        return
    try:
        text = json.dumps({"key": key, "normalized": _encode(normalized)}, allow_nan=False)
        if _decode(json.loads(text)["normalized"]) != normalized:
            return
        folder.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w") as out:
                out.write(text)
            os.replace(tmp, folder / f"{key}.json")
        finally:
            Path(tmp).unlink(missing_ok=True)
    except (OSError, TypeError, ValueError):
        return  # a cache that cannot be written is only a slower run
