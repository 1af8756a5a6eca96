"""The checked-in generated_examples/ equal a fresh render (``make examples`` refreshes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaffolder.generate import generate
from tests.helpers import REPO_ROOT, TINYLLAMA_ID

EXAMPLES = REPO_ROOT / "generated_examples"


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


def test_tinyllama_example_is_current() -> None:
    fresh = generate(TINYLLAMA_ID).files_with_record()
    checked_in = on_disk(EXAMPLES / "tinyllama_1_1b_chat_v1_0")
    assert sorted(checked_in) == sorted(fresh), "files differ: run `make examples`"
    stale = [path for path, text in fresh.items() if checked_in[path] != text]
    assert not stale, f"stale files {stale}: run `make examples`"
