"""Render llama variants that cover every feature switch, then run their own generated tests.

All variants run in one pytest subprocess (one torch/transformers import) from the folder that
holds them, exactly as a user runs ``pytest <package>``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaffolder.generate import generate
from scaffolder.render import ruff_args, write_package
from tests.helpers import tinyllama_config, write_config

VARIANTS = {
    # TinyLlama as served: GQA 32/4, default rope, untied, no biases.
    "tinyllama": {},
    # Tied embeddings, q/k/v/o and MLP biases, llama3 rope scaling, explicit head_dim != hidden/heads.
    "llama_tied_bias_llama3": {
        "tie_word_embeddings": True,
        "attention_bias": True,
        "mlp_bias": True,
        "head_dim": 96,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
    # Multi-head attention (no GQA), linear rope scaling, new-style rope_parameters.
    "llama_mha_linear": {
        "num_key_value_heads": 32,
        "rope_theta": None,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
        "max_position_embeddings": 4096,
    },
    # Dynamic NTK rope: the generated tests also run past max_position_embeddings.
    "llama_dynamic": {"rope_scaling": {"type": "dynamic", "factor": 2.0}},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("packages")
    configs = tmp_path_factory.mktemp("configs")
    for name, changes in VARIANTS.items():
        path = write_config(configs, tinyllama_config(**changes), name=f"{name}.json")
        generated = generate(str(path), name=name)
        write_package(generated.files, root / name)
    return root


def test_generated_code_is_ruff_clean(rendered: Path) -> None:
    ruff = Path(sys.executable).with_name("ruff")
    for name in VARIANTS:
        command = [str(ruff), "check", "--select", "E,F,W,I,B,UP", *ruff_args(name), name]
        result = subprocess.run(command, cwd=rendered, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        fmt = [str(ruff), "format", "--check", *ruff_args(name), name]
        result = subprocess.run(fmt, cwd=rendered, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_only_the_features_a_config_uses_are_generated(rendered: Path) -> None:
    plain = (rendered / "tinyllama" / "model" / "model.py").read_text()
    assert "tie_word_embeddings" not in plain and "bias=True" not in plain
    assert "llama3" not in plain.split('"""', 2)[2] and "rope_factor" not in plain
    tied = (rendered / "llama_tied_bias_llama3" / "model" / "model.py").read_text()
    assert "self.output.weight = self.tok_embeddings.weight" in tied
    assert "bias=True" in tied and "low_freq_wavelen" in tied
    mha = (rendered / "llama_mha_linear" / "model" / "model.py").read_text()
    assert "enable_gqa" not in mha and "rope_factor" in mha


def test_generated_tests_pass(rendered: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *VARIANTS]
    result = subprocess.run(command, cwd=rendered, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
