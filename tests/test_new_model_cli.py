"""`scaffold new-model`: what it writes, and one-line exit-2 errors that write nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TINYLLAMA_ID, run_cli, tinyllama_config, write_config

EXPECTED_FILES = {
    "__init__.py",
    "README.md",
    "hf_config.json",
    "model/__init__.py",
    "model/args.py",
    "model/model.py",
    "model/state_dict_adapter.py",
    "infra/__init__.py",
    "infra/parallelize.py",
    "infra/pipeline.py",
    "train_configs/debug_model.toml",
    "train_configs/tinyllama_1_1b_chat_v1_0.toml",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/test_model.py",
    "tests/test_args.py",
    "tests/test_state_dict_adapter.py",
}


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def package_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_tinyllama_from_bundled_snapshot(tmp_path: Path) -> None:
    result = run_cli("new-model", TINYLLAMA_ID, "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "bundled snapshot" in result.stdout
    assert "1.1B parameters" in result.stdout
    package = tmp_path / "out" / "tinyllama_1_1b_chat_v1_0"
    assert EXPECTED_FILES <= package_files(package)
    readme = (package / "README.md").read_text()
    assert "TinyLlama/TinyLlama-1.1B-Chat-v1.0" in readme


def test_render_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = run_cli("new-model", TINYLLAMA_ID, "--output", str(tmp_path / name))
        assert result.exit_code == 0, result.output
    first = tmp_path / "a" / "tinyllama_1_1b_chat_v1_0"
    second = tmp_path / "b" / "tinyllama_1_1b_chat_v1_0"
    files = package_files(first)
    assert files == package_files(second)
    for relpath in files:
        assert (first / relpath).read_bytes() == (second / relpath).read_bytes(), relpath


def test_local_file_with_name_and_force(tmp_path: Path) -> None:
    config = write_config(tmp_path, tinyllama_config(), name="my-model.settings.json")
    out = tmp_path / "out"
    assert run_cli("new-model", str(config), "--name", "mini", "--output", str(out)).exit_code == 0
    assert (out / "mini" / "model" / "model.py").is_file()

    again = run_cli("new-model", str(config), "--name", "mini", "--output", str(out))
    assert again.exit_code == 2
    assert "--force" in again.stderr
    (out / "mini" / "stale.txt").write_text("old")
    forced = run_cli("new-model", str(config), "--name", "mini", "--output", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert not (out / "mini" / "stale.txt").exists()


BAD_CONFIGS = {
    "missing field": (tinyllama_config(hidden_size=None), "hidden_size"),
    "ill-typed field": (tinyllama_config(num_hidden_layers="22"), "num_hidden_layers"),
    "boolean for int": (tinyllama_config(num_attention_heads=True), "num_attention_heads"),
    "float for int": (tinyllama_config(intermediate_size=5632.5), "intermediate_size"),
    "heads do not divide hidden": (tinyllama_config(hidden_size=2050), "hidden_size"),
    "kv heads do not divide heads": (
        tinyllama_config(num_key_value_heads=3),
        "num_key_value_heads",
    ),
    "non-positive size": (tinyllama_config(vocab_size=0), "vocab_size"),
    "unknown model_type": (tinyllama_config(model_type="mamba9"), "model_type"),
    "unknown rope type": (
        tinyllama_config(rope_scaling={"type": "spiral", "factor": 2.0}),
        "rope_scaling.type",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_fails_with_one_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    config, field = BAD_CONFIGS[case]
    path = write_config(tmp_path, config)
    out = tmp_path / "out"
    result = run_cli("new-model", str(path), "--name", "pkg", "--output", str(out))
    assert result.exit_code == 2
    assert field in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("text", "needle"),
    [("{not json", "JSON"), ('{"hidden_size": NaN}', "NaN"), ("[1, 2]", "object")],
)
def test_malformed_json(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    result = run_cli("new-model", str(path), "--output", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../evil", "a/b", "class", "1abc"])
def test_package_name_that_escapes_or_is_invalid(tmp_path: Path, name: str) -> None:
    result = run_cli("new-model", TINYLLAMA_ID, "--name", name, "--output", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "evil").exists()


def test_invalid_repo_id(tmp_path: Path) -> None:
    result = run_cli("new-model", "a/b/c", "--output", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "a/b/c" in result.stderr


def test_real_process_exit_code_and_no_traceback(tmp_path: Path) -> None:
    path = write_config(tmp_path, tinyllama_config(num_key_value_heads=3))
    process = subprocess.run(
        [sys.executable, "-m", "scaffolder", "new-model", str(path), "--output", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert process.returncode == 2
    assert "Traceback" not in process.stderr
    assert process.stderr.strip().startswith("error:")
    assert len(process.stderr.strip().splitlines()) == 1


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    assert "new-model" in result.stdout


def test_families_lists_model_types_and_features() -> None:
    result = run_cli("families")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    mistral = next(i for i, line in enumerate(lines) if line.startswith("mistral "))
    assert "sliding_window" in lines[mistral + 1]


def test_features_megatron_cannot_express_print_warnings(tmp_path: Path) -> None:
    """Gemma 2's soft-capping and sandwich norms have no Megatron arguments: one warning for each
    NOT EXPRESSIBLE note of the Megatron YAML."""
    from tests.helpers import FAMILY_CONFIGS

    result = run_cli(
        "new-model", str(FAMILY_CONFIGS / "gemma2.json"), "--name", "g2", "--output", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning")]
    assert "attn_logit_softcapping" in result.stdout
    assert "post_attention_layernorm" in result.stdout
    yaml_text = (tmp_path / "g2" / "megatron" / "models" / "g2.yaml").read_text()
    assert len(warnings) == yaml_text.count("NOT EXPRESSIBLE") > 0
    plain = run_cli("new-model", TINYLLAMA_ID, "--output", str(tmp_path / "llama"))
    assert not [line for line in plain.stdout.splitlines() if line.startswith("warning")]
