"""scaffolder/cache.py: normalized configs (hits return what transformers returned, keyed
honestly) and the Jinja bytecode cache (same rendered files)."""

from __future__ import annotations

import json

import pytest

from scaffolder import cache as scaffold_cache
from scaffolder.errors import ScaffoldError
from scaffolder.spec import normalize_with_transformers

CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 100,
    "rope_theta": 500000.0,
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCAFFOLD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "normalized-configs"


def _entries(folder):
    return sorted(folder.glob("*.json")) if folder.exists() else []


def _mark(entry):
    data = json.loads(entry.read_text())
    data["normalized"]["marker"] = "from-cache"
    entry.write_text(json.dumps(data))


def test_miss_stores_what_transformers_returned_and_a_hit_reads_it(cache):
    uncached = normalize_with_transformers(dict(CONFIG), "llama")
    (entry,) = _entries(cache)
    hit = normalize_with_transformers(dict(CONFIG), "llama")
    assert hit == uncached
    assert hit["id2label"] == {0: "LABEL_0", 1: "LABEL_1"}  # int keys survive
    _mark(entry)  # prove the second call reads the entry rather than transformers
    assert normalize_with_transformers(dict(CONFIG), "llama")["marker"] == "from-cache"


def test_key_covers_config_model_type_and_transformers_install(cache, monkeypatch):
    base = scaffold_cache.normalized_key(CONFIG, "llama")
    assert scaffold_cache.normalized_key({**CONFIG, "vocab_size": 101}, "llama") != base
    assert scaffold_cache.normalized_key(CONFIG, "mistral") != base
    monkeypatch.setattr(scaffold_cache, "transformers_fingerprint", lambda: "99.0:abc")
    assert scaffold_cache.normalized_key(CONFIG, "llama") != base


def test_other_transformers_install_misses(cache, monkeypatch):
    normalize_with_transformers(dict(CONFIG), "llama")
    _mark(_entries(cache)[0])
    monkeypatch.setattr(scaffold_cache, "transformers_fingerprint", lambda: "99.0:abc")
    assert "marker" not in normalize_with_transformers(dict(CONFIG), "llama")
    assert len(_entries(cache)) == 2


def test_unreadable_entry_is_a_miss_and_is_rewritten(cache):
    expected = normalize_with_transformers(dict(CONFIG), "llama")
    (entry,) = _entries(cache)
    entry.write_text("{not json")
    assert normalize_with_transformers(dict(CONFIG), "llama") == expected
    assert scaffold_cache.load_normalized(json.loads(entry.read_text())["key"]) == expected


def test_rejected_config_is_never_cached(cache):
    bad = {**CONFIG, "hidden_size": 65}  # not a multiple of the heads: LlamaConfig refuses it
    for _ in range(2):
        with pytest.raises(ScaffoldError):
            normalize_with_transformers(bad, "llama")
    assert _entries(cache) == []


def test_disabled_cache_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SCAFFOLD_CACHE_DIR", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    normalize_with_transformers(dict(CONFIG), "llama")
    assert not any(tmp_path.rglob("*.json"))


def test_tuples_and_odd_keys_round_trip_and_nan_is_not_stored(cache):
    value = {"a": (1, [2.5, None]), "b": {3: "x", (4, 5): True}, "__tuple__": "s"}
    scaffold_cache.store_normalized("k", value)
    assert scaffold_cache.load_normalized("k") == value
    scaffold_cache.store_normalized("k2", {"a": float("nan")})
    assert scaffold_cache.load_normalized("k2") is None


def test_render_with_and_without_the_caches_is_identical(tmp_path, monkeypatch):
    from scaffolder.generate import generate

    monkeypatch.setenv("SCAFFOLD_CACHE_DIR", "off")
    reference = generate("TinyLlama/TinyLlama-1.1B-Chat-v1.0").files
    monkeypatch.setenv("SCAFFOLD_CACHE_DIR", str(tmp_path))
    for _ in range(2):  # cold caches, then warm ones
        assert generate("TinyLlama/TinyLlama-1.1B-Chat-v1.0").files == reference
    assert any((tmp_path / "jinja").iterdir())
    assert any((tmp_path / "normalized-configs").iterdir())


def test_compiled_templates_are_used_only_from_a_private_folder(tmp_path, monkeypatch):
    """Jinja runs the code it unmarshals from the bytecode cache: a folder others may write
    (or a link to one) is not used, so they cannot plant code for the next new-model."""
    import os

    monkeypatch.setenv("SCAFFOLD_CACHE_DIR", str(tmp_path / "cache"))
    assert scaffold_cache.jinja_bytecode_cache() is not None
    folder = tmp_path / "cache" / "jinja"
    assert folder.stat().st_mode & 0o777 == 0o700
    folder.chmod(0o777)
    assert scaffold_cache.jinja_bytecode_cache() is None
    folder.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    os.symlink(tmp_path / "elsewhere", folder)
    assert scaffold_cache.jinja_bytecode_cache() is None
