"""Tensor parallel, FSDP and pipeline on 2 real gloo processes match one device."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import PACKAGE_DIR


def test_parallelize_and_pipeline_match_one_device() -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mixtral_8x7b.tests.distributed_check",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(PACKAGE_DIR.parent))
    result = subprocess.run(
        command, cwd=PACKAGE_DIR.parent, capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "distributed checks passed" in result.stdout
