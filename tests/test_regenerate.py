"""`scaffold regenerate`: new config in, every hand edit kept (issue 4), on TinyLlama."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaffolder import regenerate as regen
from scaffolder import staging
from scaffolder.record import (
    BASE_FILE,
    GENERATOR_FILE,
    GITATTRIBUTES_FILE,
    LEGACY_PRISTINE_DIR,
    base_json,
    read_record,
)
from tests.helpers import REPO_ROOT, run_cli, tinyllama_config, write_config

PACKAGE = "tinyllama"
YAML = f"megatron/models/{PACKAGE}.yaml"
LONGER_CONTEXT = {
    "rope_scaling": {"type": "linear", "factor": 2.0},
    "max_position_embeddings": 4096,
    "num_hidden_layers": 24,
}
PROPERTY_SETTINGS = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,  # the same examples on every CI run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def base_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TinyLlama package rendered once from a local copy of its config."""
    root = tmp_path_factory.mktemp("base")
    config = write_config(root, tinyllama_config())
    result = run_cli("new-model", str(config), "--name", PACKAGE, "--output", str(root / "out"))
    assert result.exit_code == 0, result.output
    return root / "out" / PACKAGE


def fresh_copy(base: Path, parent: Path) -> Path:
    """A private copy of the base package and its config under ``parent`` (as a clone would be).

    The record holds the config's path relative to the package, so the two move together.
    """
    root = base.parent.parent
    shutil.copytree(root, parent / "work", symlinks=True)
    return parent / "work" / base.relative_to(root)


@pytest.fixture
def package(base_package: Path, tmp_path: Path) -> Path:
    return fresh_copy(base_package, tmp_path)


def new_config(folder: Path, **changes) -> str:
    """Write TinyLlama's config with ``changes`` as ``new.json``; return its path."""
    return str(write_config(folder, tinyllama_config(**changes), "new.json"))


def regenerate(package: Path, *args: str):
    return run_cli("regenerate", str(package), *args)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (record included), by relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def read_base(package: Path) -> dict[str, str]:
    """``.scaffold/base.json`` as ``{relpath: text}``."""
    return {
        rel: entry["text"] for rel, entry in json.loads((package / BASE_FILE).read_text()).items()
    }


def write_base(package: Path, base: dict[str, str]) -> None:
    (package / BASE_FILE).write_text(base_json(base))


def insert_in_body(text: str, def_prefix: str, line: str) -> str:
    """Insert ``line`` as the first body line of the first def whose line starts ``def_prefix``."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, item in enumerate(lines) if item.lstrip().startswith(def_prefix))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith(":"))
    indent = len(lines[start]) - len(lines[start].lstrip()) + 4
    lines.insert(end + 1, " " * indent + line + "\n")
    return "".join(lines)


def edit(path: Path, change) -> None:
    path.write_text(change(path.read_text()))


def conflict_sides(text: str) -> tuple[str, str]:
    """The ours and theirs sections of the first conflict block in ``text``."""
    match = re.search(
        r"^<<<<<<< .*?\n(.*?)^\|\|\|\|\|\|\| .*?\n.*?^=======\n(.*?)^>>>>>>> ", text, re.M | re.S
    )
    assert match, text
    return match.group(1), match.group(2)


# ---------------------------------------------------------------- issue 4 scenarios


USER_FUNCTION = (
    "\n\ndef count_blocks(model: Transformer) -> int:\n"
    '    """Ours."""\n'
    "    return len(model.layers)\n"
)
USER_COMMENT = "# Tuned for our cluster: keep TP first."
README_LINE = "Team note: checkpoints live in /data/ckpt."


def test_longer_context_and_more_layers_keep_every_edit_and_tests_pass(package, tmp_path):
    edit(package / "model/model.py", lambda t: t + USER_FUNCTION)
    edit(
        package / "infra/parallelize.py",
        lambda t: insert_in_body(t, "def parallelize_", USER_COMMENT),
    )
    edit(package / "README.md", lambda t: t + README_LINE + "\n")

    result = regenerate(package, "--config", new_config(tmp_path, **LONGER_CONTEXT))

    assert result.exit_code == 0, result.output
    for change in (
        "n_layers (num_hidden_layers): 22 -> 24",
        "max_seq_len (max_position_embeddings): 2048 -> 4096",
        "rope.type (rope_scaling / rope_parameters): 'default' -> 'linear'",
        "rope.factor (rope_scaling / rope_parameters): None -> 2.0",
    ):
        assert change in result.output
    assert re.search(r"merged\s+model/model\.py", result.output)
    assert USER_FUNCTION in (package / "model/model.py").read_text()
    assert "    " + USER_COMMENT + "\n" in (package / "infra/parallelize.py").read_text()
    assert README_LINE in (package / "README.md").read_text()
    assert "num_layers: 24" in (package / YAML).read_text()
    assert json.loads((package / "hf_config.json").read_text())["num_hidden_layers"] == 24
    assert read_record(package).spec["rope"]["type"] == "linear"

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    tests = subprocess.run(
        # All generated tests but the loss/gradient one, which repeats the logits check's
        # numerics at the same debug dims, and the 2-rank one: every test imports the merged
        # infra/parallelize.py, and its TP plan and pipeline (TinyLlama's, with linear rope) run
        # on 2 ranks in test_generated_packages.py (tinyllama; linear rope: qwen3_sliding).
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-k",
            "not gradients and not parallelize_and_pipeline",
            PACKAGE,
        ],
        cwd=package.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]


def test_user_edit_of_the_changed_yaml_line_conflicts_with_both_values(package, tmp_path):
    text = (package / YAML).read_text()
    original = next(line for line in text.splitlines() if line.startswith("num_layers:"))
    (package / YAML).write_text(text.replace(original, "num_layers: 20  # trimmed for our budget"))

    result = regenerate(package, "--config", new_config(tmp_path, num_hidden_layers=24))

    assert result.exit_code == 1, result.output
    assert re.search(rf"conflicts\s+1 file\(s\): {re.escape(YAML)}", result.output)
    ours, theirs = conflict_sides((package / YAML).read_text())
    assert "num_layers: 20  # trimmed for our budget" in ours
    assert "num_layers: 24" in theirs
    assert json.loads((package / "hf_config.json").read_text())["num_hidden_layers"] == 24

    again = regenerate(package, "--check")
    assert again.exit_code == 2 and "conflict markers" in again.output


TIE_CHECK = """
import json, torch
from {pkg} import get_train_spec
from {pkg}.model.args import ModelArgs
spec = get_train_spec()
args = ModelArgs.from_hf(json.load(open("{pkg}/hf_config.json")))
with torch.device("meta"):
    model = spec.model_cls(args)
assert model.output.weight is model.tok_embeddings.weight
hf_keys = spec.state_dict_adapter(args, None).to_hf(model.state_dict())
assert "lm_head.weight" not in hf_keys and "model.embed_tokens.weight" in hf_keys
"""


def test_tie_word_embeddings_flip_reaches_model_and_adapter(package, tmp_path):
    from scaffolder.generate import render_resolved
    from scaffolder.source import resolve_source

    comment = "# ours: logits stay fp32"
    add_comment = lambda t: insert_in_body(t, "def forward(self, tokens", comment)  # noqa: E731
    edit(package / "model/model.py", add_comment)
    config = new_config(tmp_path, tie_word_embeddings=True)

    result = regenerate(package, "--config", config)

    assert result.exit_code == 0, result.output
    assert "tie_word_embeddings (tie_word_embeddings): False -> True" in result.output
    fresh = render_resolved(resolve_source(config), PACKAGE).files
    adapter = "model/state_dict_adapter.py"
    assert (package / adapter).read_text() == fresh[adapter]
    assert (package / "model/model.py").read_text() == add_comment(fresh["model/model.py"])
    check = subprocess.run(
        [sys.executable, "-c", TIE_CHECK.format(pkg=PACKAGE)],
        cwd=package.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stderr[-3000:]


# ---------------------------------------------------------------- --check, --dry-run, files


def test_local_source_is_recorded_relative_to_the_package(package, tmp_path):
    source = json.loads((package / ".scaffold" / "source.json").read_text())
    assert source["kind"] == "local" and source["path"] == "../../config.json"

    moved = Path(shutil.move(tmp_path / "work", tmp_path / "clone"))  # the tree moves together
    assert regenerate(moved / "out" / PACKAGE, "--check").exit_code == 0

    alone = Path(shutil.move(moved / "out" / PACKAGE, tmp_path / PACKAGE))  # the config stays
    result = regenerate(alone, "--check")
    assert result.exit_code == 2
    assert "the recorded config ../../config.json" in result.output
    assert "pass --config PATH" in result.output
    config = moved / "config.json"
    assert regenerate(alone, "--config", str(config), "--check").exit_code == 1  # record moves
    assert regenerate(alone, "--config", str(config)).exit_code == 0
    source = json.loads((alone / ".scaffold" / "source.json").read_text())
    assert source["path"] == "../clone/config.json"
    assert regenerate(alone, "--check").exit_code == 0


def test_check_over_generated_examples(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    examples = sorted(
        p.parent.parent for p in (REPO_ROOT / "generated_examples").glob("*/.scaffold/source.json")
    )
    assert examples, "generated_examples/ holds no package with a .scaffold/ record"
    for example in examples:
        result = regenerate(example, "--check")
        assert result.exit_code == 0, result.output


def test_check_and_dry_run_report_drift_and_write_nothing(package, tmp_path):
    before = snapshot(package)
    config = new_config(tmp_path, num_hidden_layers=24)

    check = regenerate(package, "--config", config, "--check")
    dry = regenerate(package, "--config", config, "--dry-run")

    assert check.exit_code == 1 and "would change: " in check.output and YAML in check.output
    assert dry.exit_code == 0, dry.output
    assert f"--- a/{YAML}\n+++ b/{YAML}\n" in dry.output
    assert "\n-num_layers: 22" in dry.output and "\n+num_layers: 24" in dry.output
    assert snapshot(package) == before
    current = regenerate(package, "--check")
    assert current.exit_code == 0 and "is up to date" in current.output, current.output


def test_added_dropped_and_deleted_files_are_handled_and_reported(package):
    base = read_base(package)
    # The previous render had these two; the new one does not. It lacked infra/pipeline.py.
    base.update({"infra/legacy.py": "LEGACY = 1\n", "infra/tuned.py": "PLAN = 1\n"})
    pipeline = base.pop("infra/pipeline.py")
    write_base(package, base)
    (package / "infra/legacy.py").write_text("LEGACY = 1\n")
    (package / "infra/tuned.py").write_text("PLAN = 2  # ours\n")
    (package / "infra/pipeline.py").unlink()
    (package / "README.md").unlink()
    (package / "NOTES.md").write_text("ours, not generated\n")

    result = regenerate(package)  # the recorded (local) source, unchanged

    assert result.exit_code == 0, result.output
    for action, path in [
        ("removed", "infra/legacy.py"),
        ("kept", "infra/tuned.py"),
        ("added", "infra/pipeline.py"),
        ("deleted", "README.md"),
    ]:
        assert re.search(rf"{action}\s+{re.escape(path)}", result.output), result.output
    assert not (package / "infra/legacy.py").exists()
    assert (package / "infra/tuned.py").read_text() == "PLAN = 2  # ours\n"
    assert (package / "infra/pipeline.py").read_text() == pipeline
    new_base = read_base(package)
    assert new_base["infra/pipeline.py"] == pipeline
    assert not (package / "README.md").exists() and "README.md" in new_base
    assert (package / "NOTES.md").read_text() == "ours, not generated\n"
    assert "infra/legacy.py" not in new_base and "infra/tuned.py" not in new_base
    assert regenerate(package, "--check").exit_code == 0


# Copies of Primus's base presets that packages shipped until the runtime read Primus's own.
OLD_BASE_YAMLS = (
    "megatron/models/language_model.yaml",
    "megatron/modules/pre_trainer.yaml",
    "megatron/modules/trainer_base.yaml",
)


def test_older_packages_lose_the_base_yamls_unless_edited(package):
    """A package rendered with the base YAMLs (their text from the fa998bd fixture): regenerate
    removes the unedited ones and keeps the edited one, with the note saying so."""
    old = REPO_ROOT / "tests" / "fixtures" / "fa998bd" / "generated_examples" / "qwen3_0_6b"
    base = read_base(package)
    assert not set(OLD_BASE_YAMLS) & set(base)  # the generator no longer renders them
    for relpath in OLD_BASE_YAMLS:
        base[relpath] = (old / relpath).read_text()
        (package / relpath).parent.mkdir(parents=True, exist_ok=True)
        (package / relpath).write_text(base[relpath])
    write_base(package, base)
    edited = "megatron/modules/trainer_base.yaml"
    ours = base[edited].replace("weight_decay: 0.1", "weight_decay: 0.2  # ours")
    assert ours != base[edited]
    (package / edited).write_text(ours)

    result = regenerate(package)

    assert result.exit_code == 0, result.output
    for relpath in OLD_BASE_YAMLS[:2]:
        assert re.search(rf"removed\s+{re.escape(relpath)}", result.output), result.output
        assert not (package / relpath).exists()
    assert re.search(
        rf"kept\s+{re.escape(edited)} \(the generator dropped it; your edits keep it\)",
        result.output,
    ), result.output
    assert (package / edited).read_text() == ours
    assert sorted(p.name for p in (package / "megatron" / "models").iterdir()) == [
        f"{PACKAGE}.yaml"
    ]
    assert not set(OLD_BASE_YAMLS) & set(read_base(package))
    assert regenerate(package, "--check").exit_code == 0


# ---------------------------------------------------------------- atomic writes, bad input


def test_interrupted_regenerate_leaves_the_package_as_it_was(package, tmp_path, monkeypatch):
    before = snapshot(package)
    real_put, written = regen._put, []

    def put_then_fail(root: Path, relpath: str, text: str | None) -> None:
        if len(written) == 3:
            raise OSError("No space left on device")
        written.append(relpath)
        real_put(root, relpath, text)

    monkeypatch.setattr(regen, "_put", put_then_fail)
    result = regenerate(package, "--config", new_config(tmp_path, num_hidden_layers=24))

    assert result.exit_code == 2
    assert (
        "No space left on device" in result.output and "the package is unchanged" in result.output
    )
    assert len(written) == 3
    assert snapshot(package) == before
    assert [p.name for p in package.parent.iterdir()] == [PACKAGE]


def test_swap_without_atomic_exchange_falls_back_to_renames(package, tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "_exchange", lambda first, second: False)
    result = regenerate(package, "--config", new_config(tmp_path, num_hidden_layers=24))
    assert result.exit_code == 0, result.output
    assert "num_layers: 24" in (package / YAML).read_text()
    assert [p.name for p in package.parent.iterdir()] == [PACKAGE]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["{missing}"], "does not exist"),
        (["{empty}"], "no complete regeneration record"),
        (["{pkg}", "--config", "{cfg}", "--revision", "main"], "not both"),
        (["{pkg}", "--revision", "main"], "--revision applies to hub sources"),
        (["{pkg}", "--config", "{bad}"], "num_key_value_heads"),
        (["{pkg}", "--config", "{missing}"], "not an existing config file"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(package, tmp_path, args, needle):
    (tmp_path / "empty").mkdir()
    bad = write_config(tmp_path, tinyllama_config(num_key_value_heads=5), "bad.json")
    paths = {
        "missing": tmp_path / "missing",
        "empty": tmp_path / "empty",
        "pkg": package,
        "cfg": new_config(tmp_path),
        "bad": bad,
    }
    before = snapshot(package)
    result = run_cli("regenerate", *(arg.format(**paths) for arg in args))
    assert result.exit_code == 2, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1
    assert snapshot(package) == before


# ---------------------------------------------------------------- properties

config_changes = st.fixed_dictionaries(
    {},
    optional={
        "num_hidden_layers": st.integers(2, 30),
        "max_position_embeddings": st.sampled_from([2048, 4096, 8192]),
        "rope_scaling": st.sampled_from(
            [
                {"type": "linear", "factor": 2.0},
                {"type": "dynamic", "factor": 4.0},
                {
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 2048,
                },
            ]
        ),
        "tie_word_embeddings": st.booleans(),
        "num_key_value_heads": st.sampled_from([1, 2, 8, 32]),
        "intermediate_size": st.sampled_from([4096, 8192]),
        "attention_bias": st.booleans(),
        "rope_theta": st.sampled_from([10000.0, 500000.0]),
    },
)


@st.composite
def user_edits(draw) -> list[tuple[str, str, int]]:
    """Random hand edits: (kind, text, position seed)."""
    kinds = ["comment-in-function", "add-function", "readme-line", "toml-comment", "yaml-change"]
    return [
        (draw(st.sampled_from(kinds)), f"user-edit-{n}", draw(st.integers(0, 10_000)))
        for n in range(draw(st.integers(0, 4)))
    ]


def apply_edit(package: Path, kind: str, tag: str, seed: int) -> tuple[str, str]:
    """Make one hand edit; return (file, the line the user wrote)."""
    if kind in ("comment-in-function", "add-function"):
        path = package / "model/model.py"
        text = path.read_text()
        if kind == "add-function":
            name = tag.replace("-", "_")
            path.write_text(text + f"\n\ndef {name}() -> str:\n    return {tag!r}\n")
            return "model/model.py", f"return {tag!r}"
        defs = [line.strip() for line in text.splitlines() if line.lstrip().startswith("def ")]
        path.write_text(insert_in_body(text, defs[seed % len(defs)], f"# {tag}"))
        return "model/model.py", f"# {tag}"
    relpath = {"readme-line": "README.md", "toml-comment": "train_configs/debug_model.toml"}.get(
        kind, YAML
    )
    lines = (package / relpath).read_text().splitlines(keepends=True)
    if kind == "yaml-change":
        values = [i for i, line in enumerate(lines) if re.match(r"^\w+: ", line)]
        at = values[seed % len(values)]
        lines[at] = lines[at].rstrip("\n") + f"  # {tag}\n"
        new_line = lines[at].strip()
    else:
        new_line = f"{tag} note" if kind == "readme-line" else f"# {tag}"
        lines.insert(seed % (len(lines) + 1), new_line + "\n")
    (package / relpath).write_text("".join(lines))
    return relpath, new_line


@PROPERTY_SETTINGS
@given(changes=config_changes, edits=user_edits())
def test_property_hand_edits_survive_any_config_change(
    base_package, tmp_path_factory, changes, edits
):
    folder = tmp_path_factory.mktemp("prop")
    package = fresh_copy(base_package, folder)
    written = [apply_edit(package, *edit_) for edit_ in edits]
    # A later edit may extend the line an earlier one wrote: expect the lines as the user left them.
    expected = [(relpath, line_as_left(package, relpath, line)) for relpath, line in written]

    result = regenerate(package, "--config", new_config(folder, **changes))

    assert result.exit_code in (0, 1), result.output
    for relpath, line in expected:
        assert line in {item.strip() for item in (package / relpath).read_text().splitlines()}


def line_as_left(package: Path, relpath: str, line: str) -> str:
    """The line of ``relpath`` that now carries the edit tag of ``line``."""
    tag = re.search(r"user-edit-\d+", line).group(0)
    marker = re.compile(re.escape(tag) + r"(?!\d)")
    lines = (package / relpath).read_text().splitlines()
    return next(item.strip() for item in lines if marker.search(item))


@PROPERTY_SETTINGS
@given(changes=config_changes)
def test_property_unedited_package_regenerates_without_conflict(
    base_package, tmp_path_factory, changes
):
    folder = tmp_path_factory.mktemp("prop")
    package = fresh_copy(base_package, folder)

    result = regenerate(package, "--config", new_config(folder, **changes))

    assert result.exit_code == 0, result.output
    assert "conflict" not in result.output
    record = read_record(package)
    on_disk = {rel: (package / rel).read_text() for rel in record.base}
    assert on_disk == record.base


# ---------------------------------------------------------------- the record: base.json


def test_base_is_one_deterministic_json_record_marked_generated_for_git(package, tmp_path):
    text = (package / BASE_FILE).read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    rendered = {
        p.relative_to(package).as_posix(): p.read_text()
        for p in package.rglob("*")
        if p.is_file() and ".scaffold" not in p.parts
    }
    assert {rel: entry["text"] for rel, entry in data.items()} == rendered
    for entry in data.values():
        assert entry["sha256"] == hashlib.sha256(entry["text"].encode()).hexdigest()
    assert sorted(p.name for p in (package / ".scaffold").iterdir()) == [
        ".gitattributes",
        "base.json",
        "generator.json",
        "source.json",
        "spec.json",
    ]
    assert json.loads((package / GENERATOR_FILE).read_text())["record_format"] == 2
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(package)], check=True)
    attributes = subprocess.run(
        ["git", "check-attr", "linguist-generated", "diff", "merge", "--"]
        + [BASE_FILE, GENERATOR_FILE, "README.md"],
        cwd=package,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert attributes.splitlines() == [
        f"{BASE_FILE}: linguist-generated: true",
        f"{BASE_FILE}: diff: unset",  # shown as binary in diffs ...
        f"{BASE_FILE}: merge: unspecified",  # ... but merged as text
        f"{GENERATOR_FILE}: linguist-generated: true",
        f"{GENERATOR_FILE}: diff: unspecified",
        f"{GENERATOR_FILE}: merge: unspecified",
        "README.md: linguist-generated: unspecified",
        "README.md: diff: unspecified",
        "README.md: merge: unspecified",
    ]


def to_record_format_1(package: Path) -> None:
    """Rewrite a package's record as format 1 wrote it: ``.scaffold/pristine/<relpath>``."""
    for relpath, text in read_base(package).items():
        path = package / LEGACY_PRISTINE_DIR / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (package / BASE_FILE).unlink()
    (package / GITATTRIBUTES_FILE).unlink()
    generator = json.loads((package / GENERATOR_FILE).read_text())
    (package / GENERATOR_FILE).write_text(json.dumps({**generator, "record_format": 1}))


def test_format_1_pristine_tree_migrates_on_regenerate_keeping_edits(package, tmp_path):
    to_record_format_1(package)
    edit(package / "model/model.py", lambda t: t + USER_FUNCTION)
    edit(package / "README.md", lambda t: t + README_LINE + "\n")
    (package / ".scaffold" / "NOTES.txt").write_text("ours\n")  # not the tool's: stays
    config = new_config(tmp_path, num_hidden_layers=24)

    check = regenerate(package, "--config", config, "--check")
    assert check.exit_code == 1 and ".scaffold/ (regeneration record)" in check.output
    assert (package / LEGACY_PRISTINE_DIR / "model/model.py").is_file()
    result = regenerate(package, "--config", config)

    assert result.exit_code == 0, result.output
    assert "record     replaced .scaffold/pristine/ with .scaffold/base.json" in result.output
    assert re.search(r"merged\s+model/model\.py", result.output), result.output
    assert USER_FUNCTION in (package / "model/model.py").read_text()
    assert README_LINE in (package / "README.md").read_text()
    assert "num_layers: 24" in (package / YAML).read_text()
    assert not (package / LEGACY_PRISTINE_DIR).exists()
    assert sorted(p.name for p in (package / ".scaffold").iterdir()) == [
        ".gitattributes",
        "NOTES.txt",
        "base.json",
        "generator.json",
        "source.json",
        "spec.json",
    ]
    assert json.loads((package / GENERATOR_FILE).read_text())["record_format"] == 2
    base = read_base(package)
    assert USER_FUNCTION not in base["model/model.py"] and "num_layers: 24" in base[YAML]
    again = regenerate(package, "--check")
    assert again.exit_code == 0 and "is up to date" in again.output, again.output


def entry(text: str) -> dict[str, str]:
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "text": text}


@pytest.mark.parametrize(
    ("base", "needle"),
    [
        ('["README.md"]\n', "must hold a JSON object"),
        ('{"README.md": "# hi\\n"}\n', 'the entry for README.md must be {"sha256": string'),
        ('{"README.md": {"text": "# hi\\n"}}\n', 'the entry for README.md must be {"sha256"'),
        ('{"README.md": {"sha256": 1, "text": "# hi\\n"}}\n', "must be {"),
        (json.dumps({"README.md": {**entry("# hi\n"), "text": "# edited\n"}}), "its sha256"),
        (json.dumps({"../outside.py": entry("X = 1\n")}), "'../outside.py' is not a path"),
        (json.dumps({"/etc/x.py": entry("X = 1\n")}), "'/etc/x.py' is not a path"),
        (json.dumps({".scaffold/spec.json": entry("{}")}), "is not a path of a file"),
        ("{not json", "cannot read regeneration record"),
        (None, "holds both .scaffold/base.json and the older .scaffold/pristine/"),
    ],
)
def test_broken_base_json_is_one_line_exit_2_and_writes_nothing(package, base, needle):
    if base is None:
        (package / LEGACY_PRISTINE_DIR).mkdir()
        (package / LEGACY_PRISTINE_DIR / "README.md").write_text("# old\n")
    else:
        (package / BASE_FILE).write_text(base)
    before = snapshot(package)

    result = regenerate(package)

    assert result.exit_code == 2, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    assert snapshot(package) == before


def test_spec_changes_list_values_and_sum_up_fields_one_side_has() -> None:
    from scaffolder.regenerate import spec_changes

    old = {"dim": 64, "features": {"bias_fields": []}}
    new = {"dim": 128, "features": {"biases": {"fields": [], "qkv_only": False}}}
    lines = spec_changes(old, new)
    assert lines == [
        "dim (hidden_size): 64 -> 128",
        "2 spec field(s) new: features.biases.fields, features.biases.qkv_only",
        "1 spec field(s) no longer recorded: features.bias_fields",
    ]
    assert not any("None ->" in line for line in lines)
    assert spec_changes(old, old) == []


# ---------------------------------------------------------------- issue 14: faults and hostility

# A `scaffold regenerate` in another process that pauses (stdout "staging", then a line on stdin)
# when it stages its first file, holding whatever the command holds at that point.
PAUSED_REGENERATE = """
import sys
from scaffolder import regenerate
from scaffolder.cli import app

put = regenerate._put

def paused(root, relpath, text):
    if not getattr(paused, "done", False):
        paused.done = True
        print("staging", flush=True)
        sys.stdin.readline()
    put(root, relpath, text)

regenerate._put = paused
app(["regenerate", *sys.argv[1:]])
"""

# A `scaffold regenerate` SIGKILLed once it has copied the package into its staging folder.
KILLED_REGENERATE = """
import os, signal, sys
from scaffolder import regenerate
from scaffolder.cli import app

def killed(root, relpath, text):
    os.kill(os.getpid(), signal.SIGKILL)

regenerate._put = killed
app(["regenerate", *sys.argv[1:]])
"""


def python_process(script: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, text=True, **kwargs)


def test_two_regenerates_at_once_the_second_is_refused(package, tmp_path):
    """Used to: both planned from the same files and exited 0, the later swap silently undoing
    the other's. Now the second says the package is busy (exit 2) and the first's files and
    record agree."""
    first = python_process(
        PAUSED_REGENERATE,
        str(package),
        "--config",
        new_config(tmp_path, num_hidden_layers=24),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        while (line := first.stdout.readline()) and line.strip() != "staging":
            pass  # the report's first lines
        assert line.strip() == "staging"
        other = tmp_path / "other"
        other.mkdir()
        second = regenerate(package, "--config", new_config(other, num_hidden_layers=26))
        first.stdin.write("\n")
        first.stdin.flush()
        assert first.wait(timeout=120) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert second.exit_code == 2, second.output
    assert len(second.output.strip().splitlines()) == 1 and "is busy" in second.output
    assert "num_layers: 24" in (package / YAML).read_text()
    assert read_record(package).spec["n_layers"] == 24
    assert regenerate(package, "--check").exit_code == 0  # files and record agree
    assert [p.name for p in package.parent.iterdir()] == [PACKAGE]  # no lock, no staging


def test_staging_left_by_a_killed_regenerate_is_removed_and_nothing_else(package, tmp_path):
    killed = python_process(
        KILLED_REGENERATE, str(package), "--config", new_config(tmp_path, num_hidden_layers=24)
    )
    assert killed.wait(timeout=120) == -signal.SIGKILL
    before = snapshot(package)
    left = [p for p in package.parent.iterdir() if p.name.startswith(f".{PACKAGE}.regenerate.")]
    assert len(left) == 1 and (left[0] / "package" / "README.md").is_file()
    mine = package.parent / f".{PACKAGE}.regenerate.abcd1234"  # the name, but not the marker
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")

    result = regenerate(package)

    assert result.exit_code == 0, result.output
    assert f"removed    {left[0]}, left by an interrupted scaffold run" in result.output
    assert not left[0].exists() and (mine / "notes.txt").read_text() == "keep"
    assert snapshot(package) == before  # the killed run changed nothing


def test_crlf_checkout_merges_by_content_and_keeps_crlf(package, tmp_path):
    """A core.autocrlf=true checkout: every file (record included) has CRLF line ends. A hand
    edit and a config change merge cleanly; the files keep CRLF; --check then finds nothing."""
    edit(package / "README.md", lambda t: t + README_LINE + "\n")
    edit(package / "model/model.py", lambda t: t + USER_FUNCTION)
    for path in package.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))

    result = regenerate(package, "--config", new_config(tmp_path, **LONGER_CONTEXT))

    assert result.exit_code == 0, result.output
    assert "conflict" not in result.output
    for relpath in ("README.md", "model/model.py", YAML, "model/args.py"):
        data = (package / relpath).read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n") > 0, relpath
    assert "num_layers: 24" in (package / YAML).read_text()
    assert README_LINE in (package / "README.md").read_text()
    assert USER_FUNCTION.replace("\n", "\r\n").encode() in (package / "model/model.py").read_bytes()
    assert regenerate(package, "--check").exit_code == 0


@pytest.mark.parametrize(
    ("record", "field", "value", "needle"),
    [
        ("source.json", "path", 5, "path must be a string or null, not a number"),
        ("source.json", "path", ["config.json"], "path must be a string or null, not an array"),
        ("source.json", "kind", {"local": 1}, "kind must be a string, not an object"),
        ("source.json", "repo_id", 3, "repo_id must be a string or null"),
        ("source.json", "config_sha256", None, "config_sha256 must be a string, not null"),
        ("generator.json", "record_format", "2", "record_format must be an integer"),
        ("generator.json", "version", [0], "version must be a string"),
        ("generator.json", "package_name", "class", "'class' is a Python keyword"),
        ("generator.json", "package_name", "os", "would shadow the module 'os'"),
        ("generator.json", "package_name", "torch", "would shadow the module 'torch'"),
    ],
)
def test_record_of_wrong_types_or_an_unsafe_package_name_is_one_line_exit_2(
    package, record, field, value, needle
):
    path = package / ".scaffold" / record
    path.write_text(json.dumps({**json.loads(path.read_text()), field: value}))
    before = snapshot(package)

    result = regenerate(package)

    assert result.exit_code == 2, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output and str(path) in result.output
    assert snapshot(package) == before


def test_check_and_dry_run_share_the_lock_and_writers_do_not(package, tmp_path):
    """Readers (--check, --dry-run) take the package's lock shared: they run beside another
    reader, not beside a writer; a writer runs beside neither."""
    import fcntl

    config = new_config(tmp_path, num_hidden_layers=24)
    lock = package.parent / f".{PACKAGE}.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_SH | fcntl.LOCK_NB)  # another reader
        assert regenerate(package, "--check").exit_code == 0
        assert regenerate(package, "--config", config, "--dry-run").exit_code == 0
        writer = regenerate(package, "--config", config)
        assert writer.exit_code == 2 and "is busy" in writer.output
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a writer
        reader = regenerate(package, "--check")
        assert reader.exit_code == 2 and "is busy" in reader.output
    assert "num_layers: 22" in (package / YAML).read_text()
    assert regenerate(package, "--config", config).exit_code == 0
    assert not lock.exists()
