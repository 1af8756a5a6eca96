"""Helpers shared by the generator tests: config variants and in-process CLI runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from scaffolder.cli import app
from scaffolder.generate import Generated, generate
from scaffolder.render import write_package

REPO_ROOT = Path(__file__).resolve().parent.parent
TINYLLAMA_ID = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
TINYLLAMA_CONFIG = (
    REPO_ROOT
    / "scaffolder"
    / "bundled_configs"
    / "TinyLlama--TinyLlama-1.1B-Chat-v1.0"
    / "config.json"
)


def _config_with(path: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """The config.json at ``path`` as a dict, with ``changes`` applied (None deletes a key)."""
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def tinyllama_config(**changes: Any) -> dict[str, Any]:
    """The TinyLlama config.json as a dict, with ``changes`` applied (None deletes a key)."""
    return _config_with(TINYLLAMA_CONFIG, changes)


FAMILY_CONFIGS = REPO_ROOT / "tests" / "configs"


def family_config(name: str, **changes: Any) -> dict[str, Any]:
    """``tests/configs/<name>.json`` (a config.json as the hub serves it) with ``changes``.

    As :func:`tinyllama_config`: None deletes a key.
    """
    return _config_with(FAMILY_CONFIGS / f"{name}.json", changes)


def write_config(folder: Path, config: dict[str, Any], name: str = "config.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(config, indent=2))
    return path


def render_config_package(root: Path, name: str, config: dict[str, Any]) -> Generated:
    """Write ``config`` to ``root/<name>.json`` and render its package into ``root/<name>``."""
    path = write_config(root, config, name=f"{name}.json")
    generated = generate(str(path), name=name)
    write_package(generated.files, root / name)
    return generated


def run_cli(*args: str, verify: bool = False):
    """Run ``scaffold`` in-process; returns click's Result (exit_code, stdout, stderr).

    ``new-model`` gets ``--no-verify`` unless ``verify``: the suite renders many packages, and
    running each one's tests (seconds apiece) belongs to tests/test_verify.py.
    """
    if args and args[0] == "new-model" and not verify:
        args = (*args, "--no-verify")
    return CliRunner().invoke(app, list(args))
