"""`scaffold assets`: tokenizer and weights from a hand-made Hugging Face cache into the package,
the full-size TOMLs pointed at them (only those keys change), and training continued from them.

Nothing is downloaded: HF_HUB_OFFLINE=1 and the cache is built here with ``save_pretrained``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from scaffolder.tomledit import set_keys
from tests.helpers import run_cli, tinyllama_config, write_config

REPO = "acme/tiny-llama"
COMMIT = "c" * 40
PACKAGE = "tiny_llama"
WORDS = ["</s>", "[UNK]"] + [f"w{i}" for i in range(62)]
TINY = {  # small enough to train in seconds; the flavor the full-size TOML trains
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": len(WORDS),
    "max_position_embeddings": 256,
    "torch_dtype": "float32",
}


def snapshot(cache: Path) -> Path:
    return cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT


def fill_cache(cache: Path, weights: bool = True) -> None:
    """A hub cache entry as huggingface_hub leaves it: refs/main and one snapshot."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = snapshot(cache)
    folder.mkdir(parents=True)
    (folder.parent.parent / "refs").mkdir()
    (folder.parent.parent / "refs" / "main").write_text(COMMIT)
    config = tinyllama_config(**TINY)
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer = Tokenizer(
        models.WordLevel({word: index for index, word in enumerate(WORDS)}, unk_token="[UNK]")
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    if weights:
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig.from_dict(config))
        model.save_pretrained(folder)
        (folder / "config.json").write_text(json.dumps(config))


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    return cache


def render(root: Path) -> Path:
    result = run_cli("new-model", REPO, "--name", PACKAGE, "--output", str(root))
    assert result.exit_code == 0, result.output
    assert "Hugging Face cache" in result.stdout
    return root / PACKAGE


def test_assets_fetch_from_the_cache_and_edit_only_the_asset_keys(hub: Path, tmp_path: Path):
    fill_cache(hub)
    package = render(tmp_path)
    full = package / "train_configs" / f"{PACKAGE}.toml"
    debug = package / "train_configs" / "debug_model.toml"
    # The user's edits: a comment, a changed value, a key with a trailing comment.
    edited = full.read_text().replace("steps = 1000", "steps = 77  # mine") + "# my notes\n"
    full.write_text(edited)
    debug_before = debug.read_bytes()

    result = run_cli("assets", str(package), "--weights")

    assert result.exit_code == 0, result.output
    assets = package / "assets"
    assert (assets / "tokenizer.json").is_file() and not (assets / "tokenizer.json").is_symlink()
    weights = assets / "model.safetensors"
    assert weights.is_symlink() and weights.resolve().is_file()
    assert str(weights.resolve()).startswith(str(hub.resolve()))  # no second copy
    assert f"{REPO} at {COMMIT}" in result.stdout
    assert f"{PACKAGE}/train_configs/{PACKAGE}.toml updated" in result.stdout

    assert debug.read_bytes() == debug_before  # the debug flavor keeps mock tokens
    text = full.read_text()
    parsed = tomllib.loads(text)
    where = f"{PACKAGE}/assets"
    assert parsed["model"]["hf_assets_path"] == where
    assert parsed["training"]["tokenizer_path"] == where
    assert parsed["checkpoint"]["initial_load_path"] == where
    assert parsed["checkpoint"]["initial_load_in_hf"] is True
    added = [line for line in text.splitlines() if line not in edited.splitlines()]
    assert sorted(added) == sorted(
        [
            f'hf_assets_path = "{where}"',
            f'tokenizer_path = "{where}"',
            f'initial_load_path = "{where}"',
            "initial_load_in_hf = true",
        ]
    )
    assert [line for line in edited.splitlines() if line not in text.splitlines()] == []

    again = run_cli("assets", str(package), "--weights")
    assert again.exit_code == 0, again.output
    assert "already set" in again.stdout and full.read_text() == text


def test_assets_then_continued_pretraining_on_text(hub: Path, tmp_path: Path) -> None:
    """The full-size TOML, pointed at the assets, trains on a text file from the hub weights
    and exports a folder with the tokenizer in it."""
    fill_cache(hub)
    package = render(tmp_path)
    assert run_cli("assets", str(package), "--weights").exit_code == 0
    data = tmp_path / "corpus.txt"
    data.write_text(" ".join(f"w{i % 62}" for i in range(4000)))
    overrides = {
        "training.steps": "2",
        "training.dataset": "text",
        "training.dataset_path": str(data),
        "training.seq_len": "32",
        "training.local_batch_size": "2",
        "training.mixed_precision_param": "float32",
        "compile.enable": "false",
        "activation_checkpoint.mode": "none",
        "checkpoint.interval": "1000",
        "metrics.enable_tensorboard": "false",
        "metrics.log_freq": "1",
    }
    command = [sys.executable, "-m", "scaffolder", "train", PACKAGE, "--config", f"{PACKAGE}.toml"]
    command += ["--"] + [part for key, value in overrides.items() for part in (f"--{key}", value)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"[setup] loading HF weights from {PACKAGE}/assets" in output
    assert "[setup]   reading model.safetensors (1/1, 0.00 GiB)" in output
    assert f"loaded HF weights from {PACKAGE}/assets" in output
    export = tmp_path / "outputs" / PACKAGE / "hf"
    assert (export / "tokenizer.json").is_file(), sorted(p.name for p in export.parent.iterdir())


def test_assets_offline_and_not_cached_is_one_line(hub: Path, tmp_path: Path) -> None:
    fill_cache(hub, weights=False)
    package = render(tmp_path)
    toml_before = (package / "train_configs" / f"{PACKAGE}.toml").read_bytes()
    result = run_cli("assets", str(package), "--weights")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert "model.safetensors" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    assert (package / "train_configs" / f"{PACKAGE}.toml").read_bytes() == toml_before

    other = run_cli("assets", str(package), "--revision", "d" * 40)
    assert other.exit_code == 2 and "not in the Hugging Face cache" in other.stderr


def test_a_key_the_editor_cannot_rewrite_stops_before_anything_is_written(
    hub: Path, tmp_path: Path
) -> None:
    fill_cache(hub, weights=False)
    package = render(tmp_path)
    full = package / "train_configs" / f"{PACKAGE}.toml"
    text = full.read_text().replace("[model]\n", '[model]\nhf_assets_path = """\nmine\n"""\n')
    full.write_text(text)
    result = run_cli("assets", str(package))
    assert result.exit_code == 2, result.output
    assert "could not set model.hf_assets_path" in result.stderr
    assert full.read_text() == text and not (package / "assets").exists()


def test_assets_refuse_a_package_from_a_local_config(hub: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path, tinyllama_config(**TINY))
    assert (
        run_cli("new-model", str(path), "--name", "local", "--output", str(tmp_path)).exit_code == 0
    )
    result = run_cli("assets", str(tmp_path / "local"))
    assert result.exit_code == 2 and "not a hub repo" in result.stderr
    missing = run_cli("assets", str(tmp_path / "nothing"))
    assert missing.exit_code == 2 and "not a generated package" in missing.stderr


def test_toml_edits_keep_everything_else_byte_for_byte() -> None:
    text = (
        "# head\r\n[model]\r\nname = 'x'  # keep\r\nhf_assets_path = \"a # b\"   # why\r\n\r\n"
        "[training]\r\nsteps = 3\r\n# trailing\r\n\r\n[metrics]\r\nx=1"
    )
    updated = set_keys(
        text,
        {
            "model": {"hf_assets_path": "new"},
            "training": {"tokenizer_path": "t"},
            "checkpoint": {"initial_load_in_hf": True},
        },
    )
    assert updated == (
        "# head\r\n[model]\r\nname = 'x'  # keep\r\nhf_assets_path = \"new\"   # why\r\n\r\n"
        '[training]\r\nsteps = 3\r\ntokenizer_path = "t"\r\n# trailing\r\n\r\n[metrics]\r\nx=1\r\n'
        "\r\n[checkpoint]\r\ninitial_load_in_hf = true\r\n"
    )
    assert tomllib.loads(updated)["model"] == {"name": "x", "hf_assets_path": "new"}
