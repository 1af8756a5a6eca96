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
