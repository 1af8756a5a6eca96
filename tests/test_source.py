"""Tests for scaffolder.source: local files, a hand-made HF cache, hub download, bundled snapshots.

Every test runs offline against temporary cache folders, so neither the network nor the user's
real Hugging Face cache is touched. The hub-download path is exercised by replacing
``huggingface_hub.hf_hub_download`` with a fake that writes into the temporary cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from pathlib import Path

import huggingface_hub
import pytest

import scaffolder
from scaffolder.errors import ScaffoldError
from scaffolder.source import (
    BUNDLED_CONFIGS_DIR,
    ResolvedSource,
    bundled_repo_ids,
    hub_cache_dir,
    hub_offline,
    package_name_from_source,
    resolve_source,
    validate_package_name,
)

TINYLLAMA = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
COMMIT_A = "a" * 40
COMMIT_B = "0123456789abcdef0123456789abcdef01234567"
SMALL_CONFIG = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2}


@pytest.fixture(autouse=True)
def isolated_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline hub with an empty temporary cache; returns the cache folder."""
    cache = tmp_path / "hf-hub-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for name in ("TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return cache


@pytest.fixture
def hub_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace hf_hub_download with a fake that writes config.json into the cache it is given."""
    calls: list[dict] = []

    def fake_download(repo_id: str, filename: str, **kwargs: object) -> str:
        calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        revision = kwargs.get("revision") or "main"
        snapshot = _snapshot_dir(Path(str(kwargs["cache_dir"])), repo_id, COMMIT_B)
        snapshot.mkdir(parents=True)
        (snapshot / filename).write_text(json.dumps({**SMALL_CONFIG, "asked": revision}))
        return str(snapshot / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    return calls


def _snapshot_dir(cache: Path, repo_id: str, commit: str) -> Path:
    """Where huggingface_hub keeps a model snapshot inside its cache."""
    return cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit


def _cache_repo(
    cache: Path, repo_id: str, snapshots: dict[str, dict], refs: dict[str, str]
) -> None:
    """Hand-make a hub cache entry: config.json per commit, and refs naming commits."""
    for commit, config in snapshots.items():
        snapshot = _snapshot_dir(cache, repo_id, commit)
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text(json.dumps(config))
    for ref, commit in refs.items():
        ref_file = cache / f"models--{repo_id.replace('/', '--')}" / "refs" / ref
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        ref_file.write_text(commit)


def _one_line_error(excinfo: pytest.ExceptionInfo[ScaffoldError]) -> str:
    """The error message, checked to be a single line."""
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# Local files and folders


def test_local_file_with_any_name(tmp_path: Path) -> None:
    config_file = tmp_path / "my model (v2).cfg"
    config_file.write_text(json.dumps(SMALL_CONFIG))

    resolved = resolve_source(str(config_file))

    assert resolved.config == SMALL_CONFIG
    assert resolved.kind == "local"
    assert (resolved.repo_id, resolved.revision) == (None, None)
    assert resolved.path == config_file
    assert resolved.sha256 == hashlib.sha256(config_file.read_bytes()).hexdigest()
    assert resolved.description == f"local file {config_file}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.kind = "hub"  # type: ignore[misc]


def test_local_folder_reads_config_json_inside(tmp_path: Path) -> None:
    folder = tmp_path / "Some-Model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMALL_CONFIG))
    (folder / "other.json").write_text("{}")

    resolved = resolve_source(str(folder))

    assert resolved.config == SMALL_CONFIG
    assert resolved.path == folder / "config.json"
    assert resolved.description == f"local folder {folder / 'config.json'}"


def test_local_path_wins_over_a_repo_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "TinyLlama" / "TinyLlama-1.1B-Chat-v1.0"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(SMALL_CONFIG))
    monkeypatch.chdir(tmp_path)

    resolved = resolve_source(TINYLLAMA)

    assert resolved.kind == "local"
    assert resolved.config == SMALL_CONFIG


def test_folder_without_config_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError) as excinfo:
        resolve_source(str(tmp_path))
    message = _one_line_error(excinfo)
    assert str(tmp_path) in message and "config.json" in message


def test_revision_with_a_local_path_is_refused(tmp_path: Path) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(SMALL_CONFIG))
    with pytest.raises(ScaffoldError, match="--revision 'v1' applies to hub repo ids"):
        resolve_source(str(config_file), revision="v1")


@pytest.mark.parametrize("missing", ["./nope/config.json", "missing.json", "/no/such/folder"])
def test_missing_local_path_is_reported_as_a_path(missing: str) -> None:
    with pytest.raises(ScaffoldError) as excinfo:
        resolve_source(missing)
    assert _one_line_error(excinfo) == (
        f"SOURCE '{missing}' does not exist; pass an existing config.json path or model folder"
    )


# ---------------------------------------------------------------------------------------------
# Strict JSON


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"hidden_size": 64,}', "not valid JSON: Expecting property name enclosed in double"),
        (b'{\n  "hidden_size": 64\n  "vocab_size": 8\n}', "at line 3 column 3"),
        (b"", "not valid JSON: Expecting value at line 1 column 1"),
        (b'{"vocab_size": 1%s}' % (b"0" * 5000), "an integer of 5001 digits at line 1 column 16"),
        (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "nested more than 32 levels deep"),
        (b"[1, 2]", "holds a JSON list, not an object"),
        (b'"llama"', "holds a JSON str, not an object"),
        (b"null", "holds a JSON NoneType, not an object"),
        (b'{"a": {"x": 1, "x": 2}}', "key 'x' appears twice"),
        (b'{"model_type": "llama\xff"}', "is not UTF-8 text"),
    ],
)
def test_bad_json_gets_one_line_naming_file_and_problem(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_bytes(content)
    with pytest.raises(ScaffoldError) as excinfo:
        resolve_source(str(config_file))
    message = _one_line_error(excinfo)
    assert f"config file '{config_file}'" in message
    assert problem in message


def test_nan_and_infinity_read_as_floats(tmp_path: Path) -> None:
    """Hub configs hold them (Nemotron-H's time_step_limit), and transformers reads them: the
    source reader does too, leaving it to the field readers to refuse one where a number is
    used."""
    config_file = tmp_path / "config.json"
    config_file.write_text('{"time_step_limit": [0.0, Infinity], "a": -Infinity, "b": NaN}')
    config = resolve_source(str(config_file)).config
    assert config["time_step_limit"] == [0.0, math.inf]
    assert config["a"] == -math.inf
    assert math.isnan(config["b"])


def test_utf8_bom_is_tolerated(tmp_path: Path) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_bytes(b"\xef\xbb\xbf" + json.dumps(SMALL_CONFIG).encode())
    resolved = resolve_source(str(config_file))
    assert resolved.config == SMALL_CONFIG
    assert resolved.sha256 == hashlib.sha256(config_file.read_bytes()).hexdigest()


def test_remote_code_config_is_returned_as_data_without_importing(tmp_path: Path) -> None:
    module_name = "scaffold_test_remote_code_module"
    config = {
        "model_type": "custom",
        "auto_map": {"AutoConfig": f"{module_name}.CustomConfig"},
        "trust_remote_code": True,
    }
    (tmp_path / f"{module_name}.py").write_text("raise SystemExit('remote code ran')\n")
    (tmp_path / "config.json").write_text(json.dumps(config))

    resolved = resolve_source(str(tmp_path))

    assert resolved.config == config
    assert module_name not in sys.modules


# ---------------------------------------------------------------------------------------------
# Hugging Face cache


def test_cache_hit_reads_main_snapshot(isolated_hub: Path, hub_calls: list[dict]) -> None:
    _cache_repo(isolated_hub, "Org/Name", {COMMIT_A: SMALL_CONFIG}, {"main": COMMIT_A})

    resolved = resolve_source("Org/Name")

    assert resolved.kind == "hf-cache"
    assert resolved.config == SMALL_CONFIG
    assert (resolved.repo_id, resolved.revision) == ("Org/Name", COMMIT_A)
    assert resolved.path == _snapshot_dir(isolated_hub, "Org/Name", COMMIT_A) / "config.json"
    assert resolved.description == (
        f"Hugging Face cache {isolated_hub}: Org/Name at revision main (commit aaaaaaaa)"
    )
    assert hub_calls == []


def test_cache_location_follows_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE")
    home = tmp_path / "another-home"
    monkeypatch.setenv("HF_HOME", str(home))
    _cache_repo(home / "hub", "solo-name", {COMMIT_A: SMALL_CONFIG}, {"main": COMMIT_A})

    assert hub_cache_dir() == home / "hub"
    resolved = resolve_source("solo-name")
    assert resolved.kind == "hf-cache"
    assert resolved.path.is_relative_to(home / "hub")


@pytest.mark.parametrize(
    ("revision", "expected_commit"),
    [(None, COMMIT_A), ("main", COMMIT_A), ("v1.0", COMMIT_B), (COMMIT_B, COMMIT_B)],
)
def test_cache_revision_by_ref_or_commit(
    isolated_hub: Path, revision: str | None, expected_commit: str
) -> None:
    configs = {COMMIT_A: {**SMALL_CONFIG, "which": "a"}, COMMIT_B: {**SMALL_CONFIG, "which": "b"}}
    _cache_repo(isolated_hub, "Org/Name", configs, {"main": COMMIT_A, "v1.0": COMMIT_B})

    resolved = resolve_source("Org/Name", revision=revision)

    assert resolved.revision == expected_commit
    assert resolved.config == configs[expected_commit]


def test_cached_revision_that_is_missing_fails_offline(isolated_hub: Path) -> None:
    _cache_repo(isolated_hub, "Org/Name", {COMMIT_A: SMALL_CONFIG}, {"main": COMMIT_A})
    with pytest.raises(ScaffoldError, match="not in the Hugging Face cache"):
        resolve_source("Org/Name", revision="v9")


def test_cache_wins_over_bundled_snapshot(isolated_hub: Path) -> None:
    _cache_repo(isolated_hub, TINYLLAMA, {COMMIT_A: SMALL_CONFIG}, {"main": COMMIT_A})
    resolved = resolve_source(TINYLLAMA)
    assert resolved.kind == "hf-cache"
    assert resolved.config == SMALL_CONFIG


@pytest.mark.parametrize("revision", ["../../etc", "/abs", "has space", "", "a//b"])
def test_invalid_revision_is_refused(revision: str) -> None:
    with pytest.raises(ScaffoldError, match="is not a valid branch, tag or commit hash"):
        resolve_source("Org/Name", revision=revision)


# ---------------------------------------------------------------------------------------------
# Hub download (faked) and offline mode


def test_hub_download_when_online(
    isolated_hub: Path, hub_calls: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    resolved = resolve_source("Org/Name", revision="v2")

    assert hub_calls == [
        {
            "repo_id": "Org/Name",
            "filename": "config.json",
            "revision": "v2",
            "cache_dir": isolated_hub,
        }
    ]
    assert resolved.kind == "hub"
    assert resolved.config == {**SMALL_CONFIG, "asked": "v2"}
    assert resolved.revision == COMMIT_B
    assert resolved.description == "Hugging Face hub: Org/Name at revision v2 (commit 01234567)"


def test_offline_never_downloads(hub_calls: list[dict]) -> None:
    with pytest.raises(ScaffoldError):
        resolve_source("Org/Name")
    assert hub_calls == []


def test_failed_download_falls_back_to_bundled(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable_hub(repo_id: str, filename: str, **kwargs: object) -> str:
        raise huggingface_hub.errors.LocalEntryNotFoundError("connection refused\nmore detail")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable_hub)

    resolved = resolve_source(TINYLLAMA)
    assert resolved.kind == "bundled"
    assert "hub download failed (LocalEntryNotFoundError: connection refused)" in (
        resolved.description
    )

    with pytest.raises(ScaffoldError) as excinfo:
        resolve_source("Org/Name")
    message = _one_line_error(excinfo)
    assert "hub download failed" in message and "check the repo id" in message


def test_hub_offline_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)]:
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert hub_offline() is expected
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub_offline() is True


def test_unknown_repo_offline_names_offline_mode_and_cache(isolated_hub: Path) -> None:
    with pytest.raises(ScaffoldError) as excinfo:
        resolve_source("Org/Unknown-Model")
    message = _one_line_error(excinfo)
    assert "'Org/Unknown-Model'" in message
    assert "HF_HUB_OFFLINE" in message
    assert str(isolated_hub) in message
    assert TINYLLAMA in message  # lists what is bundled


@pytest.mark.parametrize("repo_id", ["a/b/c", "--bad--", "foo..bar", "name.git", "x" * 97, "a b"])
def test_invalid_repo_id_is_one_clear_line(repo_id: str) -> None:
    with pytest.raises(ScaffoldError) as excinfo:
        resolve_source(repo_id)
    message = _one_line_error(excinfo)
    assert message.startswith(f"SOURCE '{repo_id}' is neither an existing file or folder")
    assert "valid Hugging Face repo id" in message
    assert "repo_type" not in message


@pytest.mark.parametrize("source", ["", "   "])
def test_empty_source_is_refused(source: str) -> None:
    with pytest.raises(ScaffoldError, match="SOURCE is empty"):
        resolve_source(source)


# ---------------------------------------------------------------------------------------------
# Bundled snapshots


def test_bundled_fallback_for_tinyllama_says_so() -> None:
    resolved = resolve_source(TINYLLAMA)

    expected_file = BUNDLED_CONFIGS_DIR / "TinyLlama--TinyLlama-1.1B-Chat-v1.0" / "config.json"
    assert resolved.kind == "bundled"
    assert (resolved.repo_id, resolved.revision) == (TINYLLAMA, None)
    assert resolved.path == expected_file
    assert resolved.config == json.loads(expected_file.read_text())
    assert resolved.config["num_key_value_heads"] == 4
    assert resolved.description.startswith(
        f"bundled snapshot of {TINYLLAMA} (hub and cache unavailable: "
    )
    assert "HF_HUB_OFFLINE" in resolved.description


def test_bundled_snapshots_live_in_the_imported_package() -> None:
    assert BUNDLED_CONFIGS_DIR == Path(scaffolder.__file__).resolve().parent / "bundled_configs"
    assert TINYLLAMA in bundled_repo_ids()


def test_bundled_lookup_ignores_case() -> None:
    resolved = resolve_source(TINYLLAMA.lower())
    assert resolved.kind == "bundled"
    assert resolved.repo_id == TINYLLAMA


def test_bundled_accepts_main_but_refuses_other_revisions() -> None:
    assert resolve_source(TINYLLAMA, revision="main").kind == "bundled"
    with pytest.raises(ScaffoldError) as excinfo:
        resolve_source(TINYLLAMA, revision="v0.9")
    message = _one_line_error(excinfo)
    assert "revision 'v0.9'" in message and "bundled snapshot has no revisions" in message


# ---------------------------------------------------------------------------------------------
# Package names


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (TINYLLAMA, "tinyllama_1_1b_chat_v1_0"),
        ("gpt2", "gpt2"),
        ("Org/1abc", "model_1abc"),
        ("Org/class", "class_model"),
        ("Org/os", "os_model"),
        ("Org/torch", "torch_model"),
        ("/models/My-Model/config.json", "my_model"),
        ("weird name.v2.json", "weird_name_v2"),
        ("Org/---", "model"),
    ],
)
def test_package_name_from_string(source: str, expected: str) -> None:
    assert package_name_from_source(source) == expected


def test_package_name_from_resolved_sources(tmp_path: Path) -> None:
    folder = tmp_path / "Mistral-7B-v0.1"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMALL_CONFIG))
    odd_file = tmp_path / "Phi-3.5-mini"
    odd_file.write_text(json.dumps(SMALL_CONFIG))

    assert package_name_from_source(str(folder)) == "mistral_7b_v0_1"
    assert package_name_from_source(resolve_source(str(folder))) == "mistral_7b_v0_1"
    assert package_name_from_source(resolve_source(str(odd_file))) == "phi_3_5_mini"
    assert package_name_from_source(resolve_source(TINYLLAMA)) == "tinyllama_1_1b_chat_v1_0"


def test_package_name_from_resolved_repo_uses_repo_name() -> None:
    resolved = ResolvedSource(
        config={},
        kind="hub",
        repo_id="meta-llama/Llama-3.2-1B",
        revision=COMMIT_A,
        path=Path("/cache/snapshots") / COMMIT_A / "config.json",
        sha256="0" * 64,
        description="Hugging Face hub",
    )
    assert package_name_from_source(resolved) == "llama_3_2_1b"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil", "would escape the output folder"),
        ("a/b", "would escape the output folder"),
        ("a\\b", "would escape the output folder"),
        ("..", "would escape the output folder"),
        ("", "would escape the output folder"),
        ("os", "would shadow the module 'os'"),
        ("transformers", "would shadow the module 'transformers'"),
        ("class", "is a Python keyword"),
        ("1abc", "is not a Python identifier"),
        ("my-model", "is not a Python identifier"),
        ("naïve", "is not a Python identifier"),
    ],
)
def test_validate_package_name_rejects(name: str, reason: str) -> None:
    with pytest.raises(ScaffoldError) as excinfo:
        validate_package_name(name)
    message = _one_line_error(excinfo)
    assert message.startswith(f"package name '{name}' {reason}")


@pytest.mark.parametrize("name", ["my_model", "tinyllama_1_1b_chat_v1_0", "Llama3", "_private"])
def test_validate_package_name_accepts_identifiers(name: str) -> None:
    assert validate_package_name(name) == name
