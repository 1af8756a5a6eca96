"""Opt-in (``make test-slow``): full-size TinyLlama, 1.1B random weights, against transformers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaffolder.generate import generate
from scaffolder.render import write_package
from tests.helpers import TINYLLAMA_ID


@pytest.mark.slow
def test_full_size_tinyllama_matches_transformers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    generated = generate(TINYLLAMA_ID)
    write_package(generated.files, tmp_path / generated.package_name)
    env = dict(os.environ, HF_HUB_OFFLINE="1", SCAFFOLD_FULL_SIZE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "full_size"]
    result = subprocess.run(
        [*command, generated.package_name], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout


def test_gpt_oss_20b_parameter_count_matches_transformers() -> None:
    """gpt-oss-20b's config.json (tests/configs/gpt_oss.json): the spec's count (the README's)
    is transformers' on the meta device. The generated package's own full-size test compares
    its model too (SCAFFOLD_FULL_SIZE=1)."""
    import json

    import torch
    from transformers import GptOssConfig, GptOssForCausalLM

    from scaffolder.families import build_spec
    from tests.helpers import FAMILY_CONFIGS

    config = json.loads((FAMILY_CONFIGS / "gpt_oss.json").read_text())
    spec = build_spec(config)
    hf_config = {k: v for k, v in config.items() if k not in ("model_type", "quantization_config")}
    with torch.device("meta"):
        hf_model = GptOssForCausalLM(GptOssConfig(**hf_config))
    count = sum(p.numel() for p in hf_model.parameters())
    assert spec.num_params() == count == 20_914_757_184
