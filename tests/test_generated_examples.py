"""The checked-in generated_examples/ equal a fresh render (``make examples`` refreshes them).

One package per family group of docs/families.md. Each is rendered again from the source its
``.scaffold/source.json`` records (the bundled TinyLlama snapshot, or a config in tests/configs/
recorded relative to the package) and must match the files on disk byte for byte, record included.
``tests/test_regenerate.py`` runs ``scaffold regenerate --check`` over the same folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaffolder.generate import generate
from scaffolder.record import local_config_path, read_record
from tests.helpers import REPO_ROOT

EXAMPLES = REPO_ROOT / "generated_examples"
# docs/families.md groups: the family each example stands for.
EXAMPLE_FAMILIES = {
    "tinyllama_1_1b_chat_v1_0": "llama",
    "qwen2_5_0_5b": "qwen2",
    "qwen3_0_6b": "qwen3",
    "gemma2_9b": "gemma2",
    "phi_3_5_mini_instruct": "phi3",
    "pythia_160m": "gpt_neox",
    "gpt2": "gpt2",
    "mixtral_8x7b": "mixtral",
    "qwen3_30b_a3b": "qwen3_moe",
    "deepseek_v3": "deepseek_v3",
    "gpt_oss_20b": "gpt_oss",
}


@pytest.fixture(autouse=True)
def offline_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def on_disk(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): path.read_text()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and ".pytest_cache" not in path.parts
    }


def test_one_example_per_family_group() -> None:
    folders = {path.name for path in EXAMPLES.iterdir() if path.is_dir()}
    assert folders == set(EXAMPLE_FAMILIES), "run `make examples`"
    for name, family in EXAMPLE_FAMILIES.items():
        spec = json.loads((EXAMPLES / name / ".scaffold" / "spec.json").read_text())
        assert spec["family"] == family, name


@pytest.mark.parametrize("name", sorted(EXAMPLE_FAMILIES))
def test_example_is_current(name: str) -> None:
    folder = EXAMPLES / name
    recorded = read_record(folder).source
    if recorded.kind == "local":
        assert not Path(recorded.path).is_absolute(), "examples record configs relative to them"
        source = str(local_config_path(recorded, folder))
    else:
        source = recorded.repo_id
    fresh = generate(source, name=name).files_with_record(folder)
    checked_in = on_disk(folder)
    assert sorted(checked_in) == sorted(fresh), "files differ: run `make examples`"
    stale = [path for path, text in fresh.items() if checked_in[path] != text]
    assert not stale, f"stale files {stale}: run `make examples`"
