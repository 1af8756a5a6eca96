"""`scaffold new-model`: what it writes, and one-line exit-2 errors that write nothing."""

from __future__ import annotations

import errno
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    TINYLLAMA_ID,
    family_config,
    run_cli,
    tinyllama_config,
    write_config,
)

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
    "config_registry.py",
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
    (out / "mini" / "model" / "model.py").write_text("# edited\n")
    (out / "mini" / "model" / "__pycache__").mkdir()
    (out / "mini" / "model" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"cache")
    forced = run_cli("new-model", str(config), "--name", "mini", "--output", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert (out / "mini" / "model" / "model.py").read_text() != "# edited\n"
    assert not (out / "mini" / "model" / "__pycache__").exists()


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
    [
        ("{not json", "JSON"),
        ('{"hidden_size": NaN}', "model_type"),
        ('{"unused": 1%s}' % ("0" * 5000), "5001 digits"),
        ("[1, 2]", "object"),
    ],
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


# ---------------------------------------------------------------------------------------------
# --force replaces only a package this tool wrote (issue 14)


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def new_model_forced(out: Path, *extra: str):
    return run_cli("new-model", TINYLLAMA_ID, "--name", "pk", "--output", str(out), *extra)


def test_force_never_writes_through_a_symlink(tmp_path: Path) -> None:
    """`pk` links to a folder of the user's: --force used to replace (and so delete) its files."""
    important = tmp_path / "important"
    important.mkdir()
    (important / "keep.txt").write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "pk").symlink_to(important)
    for extra in ((), ("--force",)):
        message = one_line_error(new_model_forced(out, *extra))
        assert "symbolic link" in message
    assert (out / "pk").is_symlink()
    assert [p.name for p in important.iterdir()] == ["keep.txt"]
    assert (important / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["pk"]


def test_force_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "pk"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "work.py").write_text("x = 1\n")
    message = one_line_error(new_model_forced(tmp_path / "out", "--force"))
    assert "not a package model-scaffolder wrote" in message
    assert (folder / "src" / "work.py").read_text() == "x = 1\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pk"]


def test_force_refuses_a_package_holding_files_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert new_model_forced(out).exit_code == 0
    (out / "pk" / "notes.md").write_text("mine")
    (out / "pk" / "model" / "extra.py").write_text("mine")
    message = one_line_error(new_model_forced(out, "--force"))
    assert "model/extra.py, notes.md" in message and "scaffold regenerate" in message
    assert (out / "pk" / "notes.md").read_text() == "mine"
    assert (out / "pk" / "model" / "extra.py").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["pk"]


def test_force_refuses_a_file_at_the_package_path(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "pk").write_text("a file")
    message = one_line_error(new_model_forced(out, "--force"))
    assert "is a file" in message
    assert (out / "pk").read_text() == "a file"
    assert sorted(p.name for p in out.iterdir()) == ["pk"]


def test_a_failed_write_leaves_nothing_and_keeps_the_old_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while the package is staged: one line, the old package as it was, no new
    folders (the output folder included) and no staging folder."""
    out = tmp_path / "out"
    assert new_model_forced(out).exit_code == 0
    before = {p: p.read_bytes() for p in (out / "pk").rglob("*") if p.is_file()}
    write_text = Path.write_text

    def full_disk(self: Path, *args, **kwargs):
        if self.name == "model.py" and "/.pk." in str(self):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    message = one_line_error(new_model_forced(out, "--force"))
    assert "No space left on device" in message and str(out / "pk") in message
    assert {p: p.read_bytes() for p in (out / "pk").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ["pk"]
    fresh = tmp_path / "new" / "deeper"
    one_line_error(new_model_forced(fresh))
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------
# Hostile config values: one line naming the field, exit 2, nothing written (issue 14)

HOSTILE_CONFIGS = {
    "dtype with a space": (tinyllama_config(torch_dtype="float32 "), "torch_dtype"),
    "list for a dtype": (tinyllama_config(torch_dtype=["bfloat16"]), "torch_dtype"),
    "list for a nested dtype": (
        tinyllama_config(rope_scaling={"dtype": ["x"]}),
        "rope_scaling.dtype",
    ),
    "size beyond float": (tinyllama_config(vocab_size=10**400), "vocab_size"),
    "float field beyond float": (tinyllama_config(rope_theta=10**400), "rope_theta"),
    "method name as a key": (tinyllama_config(to_dict=1), "to_dict"),
    "string for id2label": (tinyllama_config(id2label="x"), "id2label"),
    "too many labels": (tinyllama_config(num_labels=2**17), "num_labels"),
    "gemma3 pattern 0": (
        family_config("gemma3_text", layer_types=None, sliding_window_pattern=0),
        "sliding_window_pattern",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CONFIGS))
def test_hostile_value_gets_one_line_naming_the_field(tmp_path: Path, case: str) -> None:
    config, field = HOSTILE_CONFIGS[case]
    path = write_config(tmp_path, config)
    out = tmp_path / "out"
    result = run_cli("new-model", str(path), "--name", "pkg", "--output", str(out))
    assert f"'{field}'" in one_line_error(result)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# User-supplied text is printed as text, never as rich markup (issue 14)


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        ({"model_type": "[/]"}, "'[/]'"),
        ({"hidden_act": "[red]x[/red]"}, "'[red]x[/red]'"),
        ({"torch_dtype": "[bold]float32"}, "'[bold]float32'"),
    ],
)
def test_markup_in_config_values_is_printed_literally(
    tmp_path: Path, changes: dict, shown: str
) -> None:
    path = write_config(tmp_path, tinyllama_config(**changes))
    result = run_cli("new-model", str(path), "--name", "pkg", "--output", str(tmp_path / "o"))
    assert shown in one_line_error(result)


def test_markup_and_control_characters_in_paths_are_printed_literally(tmp_path: Path) -> None:
    out = tmp_path / "[bold]out[/bold]\x1b[2J"
    result = run_cli("new-model", TINYLLAMA_ID, "--name", "pk", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "[bold]out[/bold]\\x1b[2J/pk" in result.stdout
    assert "\x1b" not in result.stdout
    again = run_cli("new-model", TINYLLAMA_ID, "--name", "pk", "--output", str(out))
    assert "[bold]out[/bold]\\x1b[2J/pk already exists" in one_line_error(again)


# ---------------------------------------------------------------------------------------------
# NaN and Infinity: read as transformers reads them, refused only where a number is used


def test_infinity_in_a_field_no_recipe_reads_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    text = json.dumps(tinyllama_config(time_step_limit=[0.0, math.inf], unused=math.nan))
    assert "Infinity" in text and "NaN" in text
    path.write_text(text)
    result = run_cli("new-model", str(path), "--name", "pk", "--output", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    written = (tmp_path / "o" / "pk" / "hf_config.json").read_text()
    assert json.loads(written)["time_step_limit"] == [0.0, math.inf]


@pytest.mark.parametrize(
    ("field", "value"),
    [("rms_norm_eps", math.nan), ("rope_theta", math.inf), ("initializer_range", -math.inf)],
)
def test_non_finite_value_of_a_used_field_is_refused(
    tmp_path: Path, field: str, value: float
) -> None:
    path = write_config(tmp_path, tinyllama_config(**{field: value}))
    result = run_cli("new-model", str(path), "--name", "pk", "--output", str(tmp_path / "o"))
    message = one_line_error(result)
    assert f"'{field}'" in message and "finite" in message
    assert not (tmp_path / "o").exists()
