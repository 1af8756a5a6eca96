"""Helpers shared by the generator tests: config variants and in-process CLI runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from scaffolder.cli import app

REPO_ROOT = Path(__file__).resolve().parent.parent
TINYLLAMA_ID = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
TINYLLAMA_CONFIG = (
    REPO_ROOT
    / "scaffolder"
    / "bundled_configs"
    / "TinyLlama--TinyLlama-1.1B-Chat-v1.0"
    / "config.json"
)


def tinyllama_config(**changes: Any) -> dict[str, Any]:
    """The TinyLlama config.json as a dict, with ``changes`` applied (None deletes a key)."""
    config = json.loads(TINYLLAMA_CONFIG.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


FAMILY_CONFIGS = REPO_ROOT / "tests" / "configs"


def family_config(name: str, **changes: Any) -> dict[str, Any]:
    """``tests/configs/<name>.json`` (a config.json as the hub serves it) with ``changes``.

    As :func:`tinyllama_config`: None deletes a key.
    """
    config = json.loads((FAMILY_CONFIGS / f"{name}.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def write_config(folder: Path, config: dict[str, Any], name: str = "config.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(config, indent=2))
    return path


def run_cli(*args: str):
    """Run ``scaffold`` in-process; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, list(args))
