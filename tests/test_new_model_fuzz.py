"""`scaffold new-model` under hostile config.json input: seeded mutations of the TinyLlama config.

Every run exits 0 or 2, never with a traceback; exit 2 prints one line and writes nothing; a
package that is written parses, and passes ruff, as generated code must.
"""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scaffolder.render import ruff_args
from tests.helpers import run_cli, tinyllama_config

SEEDS = 300
CHUNKS = 4  # separate tests, so pytest-xdist spreads them over its workers
HUGE_DIGITS = "9" * 5000  # more digits than Python turns into an int by default (4300)
_HUGE = "__huge_int__"  # written into the JSON text as HUGE_DIGITS

STRINGS = (
    "[/]",
    "[red]x[/red]",
    "[bold]",
    "\\[",
    "float32 ",
    "",
    " ",
    "模型",
    "é\u0301",
    "\u202e",
    "🦙",
    "\x1b[31m",
    "a\nb",
    "\\",
    "silu[/]",
)
NUMBERS: tuple[Any, ...] = (
    0,
    -1,
    1,
    2**31,
    2**64,
    10**400,
    1e308,
    -1e308,
    1e-320,
    float("inf"),
    float("-inf"),
    float("nan"),
    0.5,
    22.0,
    _HUGE,
)
OTHERS: tuple[Any, ...] = (None, True, False, [], {}, ["silu"], [1, 2], {"a": 1}, [None], {"": []})
# Keys transformers' config classes treat specially, or that name their methods.
NEW_KEYS = (
    "to_dict",
    "id2label",
    "label2id",
    "num_labels",
    "dtype",
    "torch_dtype",
    "sliding_window",
    "head_dim",
    "rope_scaling",
    "rope_parameters",
    "auto_map",
    "architectures",
    "time_step_limit",
    "pad_token_id",
    "layer_types",
    "problem_type",
    "[red]key[/red]",
    "unused",
)


def _value(rng: random.Random, old: Any) -> Any:
    pool = rng.choice((STRINGS, NUMBERS, OTHERS))
    value = rng.choice(pool)
    if isinstance(old, str) and pool is STRINGS and rng.random() < 0.5:
        return rng.choice((old + value, value + old))  # keep the value, add markup or unicode
    if rng.random() < 0.15:
        return [value, value]
    return value


def _strings_everywhere(config: Any, suffix: str) -> Any:
    if isinstance(config, dict):
        return {key: _strings_everywhere(value, suffix) for key, value in config.items()}
    if isinstance(config, list):
        return [_strings_everywhere(value, suffix) for value in config]
    return config + suffix if isinstance(config, str) else config


def mutate(seed: int) -> dict[str, Any]:
    """TinyLlama's config with one to three seeded mutations."""
    rng = random.Random(seed)
    config = tinyllama_config()
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        if kind < 0.1:
            config = _strings_everywhere(config, rng.choice(STRINGS))
        elif kind < 0.6:
            key = rng.choice(sorted(config))
            config[key] = _value(rng, config[key])
        elif kind < 0.7:
            config.pop(rng.choice(sorted(config)))
        elif kind < 0.85:
            config[rng.choice(NEW_KEYS)] = _value(rng, None)
        else:
            block = config.setdefault("rope_scaling", None)
            if not isinstance(block, dict):
                block = config["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0}
            block[rng.choice(("rope_type", "factor", "low_freq_factor", "type"))] = _value(
                rng, block.get("rope_type")
            )
    return config


def config_text(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=1).replace(f'"{_HUGE}"', HUGE_DIGITS)


def run_seed(root: Path, seed: int) -> Path | None:
    """Render seed's mutation into ``root``; the package folder, or None when refused."""
    config = mutate(seed)
    path = root / f"config_{seed}.json"
    path.write_text(config_text(config))
    out = root / (f"out_{seed}" if seed % 7 else f"[red]out_{seed}[/red]")
    result = run_cli("new-model", str(path), "--name", "pk", "--output", str(out))
    context = f"seed {seed}: {json.dumps(config)[:300]}\n{result.output}"
    assert result.exit_code in (0, 2), f"{context}\n{result.exception!r}"
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), context
    assert "Traceback" not in result.output, context
    if result.exit_code == 2:
        assert result.stderr.startswith("error: "), context
        assert len(result.stderr.strip().splitlines()) == 1, context
        assert not out.exists(), context
        return None
    package = out / "pk"
    for source in package.rglob("*.py"):
        ast.parse(source.read_text(), filename=str(source))
    return package


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_mutated_configs_exit_0_or_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    packages = [run_seed(tmp_path, seed) for seed in range(chunk, SEEDS, CHUNKS)]
    written = [package for package in packages if package is not None]
    refused = len(packages) - len(written)
    assert written and refused, f"{len(written)} written, {refused} refused: mutate differently"
    ruff = Path(sys.executable).with_name("ruff")
    for command in (  # as tests/test_generated_packages.py checks generated code, in one run
        [str(ruff), "check", "--select", "E,F,W,I,B,UP", *ruff_args("pk")],
        [str(ruff), "format", "--check", *ruff_args("pk")],
    ):
        result = subprocess.run([*command, *map(str, written)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
