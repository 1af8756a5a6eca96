"""The smoke run docs/megatron.md gives for the Primus experiment YAML, run exactly as written."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib

from runtime_helpers import DEBUG_TOML, PACKAGE_DIR, REPO_ROOT, child_env

DOC = REPO_ROOT / "docs" / "megatron.md"


def documented_smoke_command() -> list[str]:
    (line,) = [
        line.strip()
        for line in DOC.read_text().splitlines()
        if re.match(r"scaffold train \S+ --config megatron/exp_pretrain\.yaml --smoke", line)
    ]
    return shlex.split(line)


def test_the_documented_smoke_run_trains_the_debug_flavor_from_the_yaml(tmp_path):
    scaffold, *args = documented_smoke_command()
    assert scaffold == "scaffold" and args[1] == "tinyllama_1_1b_chat_v1_0"
    args[1] = str(PACKAGE_DIR)  # the docs run from the folder holding the package
    env = child_env()
    result = subprocess.run(
        [sys.executable, "-m", "scaffolder", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"training {PACKAGE_DIR.name}/debugmodel" in output
    # The experiment's own values still hold: its dump folder (workspace/work_group/user/exp).
    dump = tmp_path / "output" / "scaffold" / "user" / f"{PACKAGE_DIR.name}-pretrain"
    records = [json.loads(line) for line in (dump / "metrics.jsonl").read_text().splitlines()]
    debug_steps = tomllib.loads(DEBUG_TOML.read_text())["training"]["steps"]
    assert debug_steps != 50  # the experiment's train_iters
    assert records[-1]["step"] == debug_steps
