"""`scaffold verify` and new-model's verification: the package's own comparisons with
transformers, run in a pytest subprocess and tabulated; exit 1 naming what disagrees."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scaffolder.verify import Check, describe, rows
from tests.helpers import REPO_ROOT, TINYLLAMA_ID, run_cli

PACKAGE = "tinyllama_1_1b_chat_v1_0"


def scaffold(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``scaffold ARGS`` as a user runs it: a real process, offline."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="120", **env)
    command = [sys.executable, "-m", "scaffolder", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def verified(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """TinyLlama rendered by new-model with its default verification: (package, stdout)."""
    root = tmp_path_factory.mktemp("verify")
    cache = str(root / "hf-cache")  # empty: the bundled config
    result = scaffold(
        "new-model", TINYLLAMA_ID, "--output", str(root), cwd=root, HF_HUB_CACHE=cache
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root / PACKAGE, result.stdout


def test_new_model_verifies_the_package_by_default(verified: tuple[Path, str]) -> None:
    package, stdout = verified
    assert re.search(r"verified 1\d checks against transformers in \d+\.\ds", stdout), stdout
    for check in (
        "logits match transformers",
        "loss and gradients match transformers",
        "full size parameter count matches transformers",
        "round trip from hf is bit identical",
        "export loads in transformers with identical logits",
    ):
        assert re.search(rf"│ \w+ +│ {check} +│ ok ", stdout), (check, stdout)
    assert f"next     scaffold train {package}" in stdout
    # pytest ran with no cache and no bytecode: nothing was added to the package.
    assert not list(package.rglob("__pycache__")) and not list(package.rglob(".pytest_cache"))
    assert not (package.parent / ".pytest_cache").exists()


def test_verify_fails_on_a_broken_adapter_naming_the_mismatch(
    verified: tuple[Path, str], tmp_path: Path
) -> None:
    """An adapter that loads gate_proj as up_proj and back: the round trips stay the identity
    (the swap is its own inverse), the comparisons with transformers do not."""
    package, _ = verified
    broken = tmp_path / PACKAGE
    shutil.copytree(package, broken)
    adapter = broken / "model" / "state_dict_adapter.py"
    text = adapter.read_text()
    gate = '"model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w1.weight",'
    up = '"model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w3.weight",'
    assert gate in text and up in text
    swapped_gate, swapped_up = gate.replace(".w1.", ".w3."), up.replace(".w3.", ".w1.")
    adapter.write_text(text.replace(gate, swapped_gate).replace(up, swapped_up))

    result = scaffold("verify", PACKAGE, cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"│ model +│ logits match transformers +│ MISMATCH", result.stdout)
    assert re.search(r"│ adapter +│ round trip from hf is bit identical +│ ok", result.stdout)
    assert "failed  model: logits match transformers" in result.stdout
    assert re.search(r"verify failed: \d of 1\d checks disagree with transformers", result.stdout)
    assert "Traceback" not in result.stdout + result.stderr


def test_verify_reports_a_package_that_does_not_import(
    verified: tuple[Path, str], tmp_path: Path
) -> None:
    broken = tmp_path / PACKAGE
    shutil.copytree(verified[0], broken)
    (broken / "model" / "state_dict_adapter.py").write_text("def broken(:\n")
    result = scaffold("verify", str(broken), cwd=REPO_ROOT)
    assert result.returncode == 1, result.stdout + result.stderr
    # The conftest imports the package: pytest stops before any test, and says why.
    assert "state_dict_adapter.py" in result.stdout and "SyntaxError" in result.stdout
    assert "verify failed: the package's tests did not run" in result.stdout


def test_verify_refuses_what_is_not_a_package(tmp_path: Path) -> None:
    missing = run_cli("verify", str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert missing.stderr.startswith("error: ") and len(missing.stderr.splitlines()) == 1
    (tmp_path / "folder").mkdir()
    not_a_package = run_cli("verify", str(tmp_path / "folder"))
    assert not_a_package.exit_code == 2
    assert "is not a generated package" in not_a_package.stderr


def test_new_model_no_verify_prints_the_verify_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    result = run_cli("new-model", TINYLLAMA_ID, "--output", str(tmp_path))  # --no-verify added
    assert result.exit_code == 0, result.output
    assert f"next     scaffold verify {tmp_path / PACKAGE}" in result.stdout
    assert "against transformers" not in result.stdout


def test_table_rows_fold_passing_config_checks_and_parametrized_tests() -> None:
    def check(nodeid: str, outcome: str = "passed") -> Check:
        section, name = describe(nodeid)
        return Check(nodeid, section, name, outcome, 0.5, "" if outcome == "passed" else "boom")

    checks = [
        check("p/tests/test_args.py::test_to_hf_round_trips"),
        check("p/tests/test_args.py::test_train_configs[a.toml]"),
        check("p/tests/test_model.py::test_logits_match_transformers[1]"),
        check("p/tests/test_model.py::test_logits_match_transformers[2]"),
        check("p/tests/test_state_dict_adapter.py::test_round_trip", "failed"),
    ]
    assert [(r.section, r.name, r.outcome, r.count) for r in rows(checks)] == [
        ("config", "config.json <-> ModelArgs, train configs", "passed", 2),
        ("model", "logits match transformers", "passed", 2),
        ("adapter", "round trip", "failed", 1),
    ]
    checks[1] = check("p/tests/test_args.py::test_train_configs[a.toml]", "failed")
    assert [(r.name, r.outcome) for r in rows(checks)][:2] == [
        ("to hf round trips", "passed"),
        ("train configs [a.toml]", "failed"),
    ]


EXAMPLES = sorted(
    path.name
    for path in (REPO_ROOT / "generated_examples").iterdir()
    if (path / "tests" / "test_model.py").is_file()
)


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES)
def test_verify_passes_on_every_example(example: str) -> None:
    """Every checked-in example, dense and MoE (about 10 s each, 30-90 s for MoE on 2 cores)."""
    result = scaffold("verify", example, cwd=REPO_ROOT / "generated_examples")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"verified \d+ checks against transformers", result.stdout)
