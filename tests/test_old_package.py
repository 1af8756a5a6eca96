"""A package made by an older generator regenerates into the current layout, hand edits kept.

The fixture ``tests/fixtures/fa998bd/`` is ``git archive fa998bd generated_examples/qwen3_0_6b
tests/configs/qwen3.json``: the Qwen3 package exactly as the generator at commit fa998bd wrote it
(record format 1, the base as ``.scaffold/pristine/<relpath>``, restored by :func:`old_package`
from the package's own files, which it copied exactly; an ``infra/pipeline.py`` the
current generator no longer renders for tied embeddings), next to the config it recorded as
``../../tests/configs/qwen3.json``. The templates keep changing, so every expectation is a fresh
in-process render of the same config, never a checked-in copy.
"""

from __future__ import annotations

import compileall
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from scaffolder.generate import generate
from scaffolder.record import (
    BASE_FILE,
    GENERATOR_FILE,
    LEGACY_PRISTINE_DIR,
    RECORD_DIR,
    RECORD_FORMAT,
    base_json,
)
from tests.helpers import REPO_ROOT, run_cli

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "fa998bd"
NAME = "qwen3_0_6b"
PACKAGE = f"generated_examples/{NAME}"
CONFIG = "tests/configs/qwen3.json"
USER_FILE = "notes/cluster.md"
USER_TEXT = "# Our cluster\n\nRun on 2 nodes; never regenerate from a hub revision.\n"

Edit = Callable[[str], str]


def replace_once(old: str, new: str) -> Edit:
    def change(text: str) -> str:
        assert text.count(old) == 1, f"expected {old!r} once in the file"
        return text.replace(old, new)

    return change


def append(addition: str) -> Edit:
    return lambda text: text + addition


# Hand edits none of which the generator's changes since fa998bd overlap: each applies to the old
# file and to the fresh render alike, and the regenerated file must equal the edited render.
HELPER = '''

def tp_degree_for(world_size: int) -> int:
    """Our cluster: tensor parallelism within a node of 8 GPUs."""
    return min(world_size, 8)
'''
README_NOTE = "\n## Team notes\n\nCheckpoints live in /data/ckpt/qwen3.\n"
EDITS: dict[str, Edit] = {
    "model/model.py": replace_once(
        "        return self.w2(F.silu(self.w1(x)) * self.w3(x))\n",
        "        # Fused by our kernel team's compile pass (ticket 412).\n"
        "        return self.w2(F.silu(self.w1(x)) * self.w3(x))\n",
    ),
    "infra/parallelize.py": append(HELPER),
    "train_configs/debug_model.toml": replace_once("lr = 8e-4\n", "lr = 3e-4  # ours\n"),
    "README.md": append(README_NOTE),
}


def old_package(tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the fixture; returns the package folder and its recorded config."""
    shutil.copytree(FIXTURE, tmp_path / "repo")
    package, config = tmp_path / "repo" / PACKAGE, tmp_path / "repo" / CONFIG
    generator = json.loads((package / GENERATOR_FILE).read_text())
    assert generator["record_format"] == 1
    source = json.loads((package / RECORD_DIR / "source.json").read_text())
    assert (package / source["path"]).resolve() == config.resolve()
    # fa998bd's pristine tree held an exact copy of every file it wrote (the fixture is that
    # output, unedited); the fixture leaves the copy out and it is restored here.
    pristine = package / LEGACY_PRISTINE_DIR
    for path in sorted(package.rglob("*")):
        relpath = path.relative_to(package)
        if path.is_file() and RECORD_DIR not in relpath.parts:
            (pristine / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, pristine / relpath)
    return package, config


def package_files(package: Path) -> dict[str, str]:
    """Every file of the package outside the record, by relative path."""
    return {
        path.relative_to(package).as_posix(): path.read_text()
        for path in package.rglob("*")
        if path.is_file() and RECORD_DIR not in path.relative_to(package).parts
    }


def edit(package: Path, relpath: str, change: Edit) -> None:
    path = package / relpath
    path.write_text(change(path.read_text()))


def test_fa998bd_package_regenerates_into_the_current_layout_keeping_hand_edits(tmp_path):
    package, config = old_package(tmp_path)
    for relpath, change in EDITS.items():
        edit(package, relpath, change)
    (package / USER_FILE).parent.mkdir()
    (package / USER_FILE).write_text(USER_TEXT)

    result = run_cli("regenerate", str(package))

    assert result.exit_code == 0, result.output
    assert "conflict" not in result.output, result.output
    assert "record     replaced .scaffold/pristine/ with .scaffold/base.json" in result.output
    fresh = generate(str(config), name=NAME)
    expected = {
        **{rel: EDITS[rel](text) if rel in EDITS else text for rel, text in fresh.files.items()},
        USER_FILE: USER_TEXT,
    }
    assert package_files(package) == expected  # edits kept, every other file as rendered now
    assert not (package / LEGACY_PRISTINE_DIR).exists()
    record = fresh.files_with_record(package)
    for relpath in sorted(path for path in record if path.startswith(f"{RECORD_DIR}/")):
        assert (package / relpath).read_text() == record[relpath], relpath
    assert (package / BASE_FILE).read_text() == base_json(fresh.files)
    assert json.loads((package / GENERATOR_FILE).read_text())["record_format"] == RECORD_FORMAT
    assert sorted(p.name for p in (package / RECORD_DIR).iterdir()) == [
        ".gitattributes",
        "base.json",
        "generator.json",
        "source.json",
        "spec.json",
    ]

    again = run_cli("regenerate", str(package), "--check")
    assert again.exit_code == 0, again.output
    assert "is up to date" in again.output, again.output


def test_fa998bd_package_with_a_conflicting_edit_migrates_and_reports_the_conflict(tmp_path):
    package, config = old_package(tmp_path)
    yaml = f"megatron/models/{NAME}.yaml"
    edit(package, yaml, replace_once("num_layers: 28 ", "num_layers: 32 "))  # ours
    edit(package, "infra/parallelize.py", append(HELPER))
    data = json.loads(config.read_text())  # the recorded config changed upstream: theirs
    config.write_text(json.dumps({**data, "num_hidden_layers": 24}, indent=2))

    result = run_cli("regenerate", str(package))

    assert result.exit_code == 1, result.output  # regenerated, with conflicts to resolve
    assert re.search(rf"^conflicts\s+1 file\(s\): {re.escape(yaml)};", result.output, re.M), (
        result.output
    )
    assert "record     replaced .scaffold/pristine/ with .scaffold/base.json" in result.output
    text = (package / yaml).read_text()
    ours, theirs = text.index("num_layers: 32 "), text.index("num_layers: 24 ")
    assert text.index("<<<<<<< ") < ours < text.index("=======") < theirs
    assert theirs < text.index(">>>>>>> ")
    assert (package / "infra/parallelize.py").read_text().endswith(HELPER)
    assert not (package / LEGACY_PRISTINE_DIR).exists()
    fresh = generate(str(config), name=NAME)
    assert (package / BASE_FILE).read_text() == base_json(fresh.files)
    assert "num_layers: 24 " in fresh.files[yaml]

    check = run_cli("regenerate", str(package), "--check")
    assert check.exit_code == 2 and "still has conflict markers" in check.output, check.output


def test_fa998bd_package_migrates_after_python_compiled_its_pristine_tree(tmp_path):
    """``python -m compileall`` (as Docker images run) also compiles ``.scaffold/pristine/``."""
    package, _ = old_package(tmp_path)
    assert compileall.compile_dir(package, quiet=2)
    assert any((package / LEGACY_PRISTINE_DIR).rglob("__pycache__/*.pyc"))

    result = run_cli("regenerate", str(package))

    assert result.exit_code == 0, result.output
    assert not (package / LEGACY_PRISTINE_DIR).exists()
    assert any(package.glob("model/__pycache__/*.pyc"))  # the package's own caches: not ours
    again = run_cli("regenerate", str(package), "--check")
    assert again.exit_code == 0 and "is up to date" in again.output, again.output
