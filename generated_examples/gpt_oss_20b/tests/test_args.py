"""ModelArgs against config.json, and the train configs against ModelArgs."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from transformers import GptOssConfig

from gpt_oss_20b import gpt_oss_20b_configs
from gpt_oss_20b.model.args import ModelArgs

from .conftest import PACKAGE_DIR

FULL_FLAVOR = "20.9B"


def test_full_flavor_is_the_source_config(hf_config: dict[str, Any]) -> None:
    assert ModelArgs.from_hf(hf_config) == gpt_oss_20b_configs[FULL_FLAVOR]
    assert ModelArgs() == gpt_oss_20b_configs[FULL_FLAVOR]


def test_to_hf_round_trips(debug_args: ModelArgs) -> None:
    assert ModelArgs.from_hf(debug_args.to_hf()) == debug_args


def test_old_and_new_rope_styles_agree() -> None:
    """The config class's old-style rope fields read as its rope_parameters do."""
    new_style = gpt_oss_20b_configs[FULL_FLAVOR].to_hf()
    old_style = dict(new_style)
    rope = dict(old_style.pop("rope_parameters"))
    old_style["rope_theta"] = rope.pop("rope_theta")
    old_style["rope_scaling"] = {"type": rope.pop("rope_type"), **rope}
    assert ModelArgs.from_hf(old_style) == ModelArgs.from_hf(new_style)
    # transformers reads both the same way too.
    old, new = GptOssConfig(**old_style), GptOssConfig(**new_style)
    # (It keeps the old "type" spelling next to rope_type.)
    assert {k: v for k, v in old.rope_parameters.items() if k != "type"} == new.rope_parameters


def test_a_different_architecture_is_refused(hf_config: dict[str, Any]) -> None:
    flipped = dict(hf_config, tie_word_embeddings=not False)
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        ModelArgs.from_hf(flipped)


def test_a_config_that_does_not_slide_is_refused(hf_config: dict[str, Any]) -> None:
    changed = dict(hf_config, sliding_window=None)
    with pytest.raises(ValueError, match="sliding_window_attention"):
        ModelArgs.from_hf(changed)


def load_toml(name: str) -> dict[str, Any]:
    with open(PACKAGE_DIR / "train_configs" / name, "rb") as f:
        return tomllib.load(f)


@pytest.mark.parametrize("name", ["debug_model.toml", "gpt_oss_20b.toml"])
def test_train_configs_name_this_package_and_a_flavor(name: str) -> None:
    config = load_toml(name)
    assert config["model"]["name"] == "gpt_oss_20b"
    args = gpt_oss_20b_configs[config["model"]["flavor"]]
    assert config["training"]["seq_len"] <= args.max_seq_len
    parallelism = config["parallelism"]
    assert args.n_heads % parallelism["tensor_parallel_degree"] == 0
    assert args.n_kv_heads % parallelism["tensor_parallel_degree"] == 0
    assert args.n_layers >= parallelism["pipeline_parallel_degree"]


def test_full_size_config_uses_the_checkpoint_dtype_for_compute() -> None:
    config = load_toml("gpt_oss_20b.toml")
    assert config["model"]["flavor"] == FULL_FLAVOR
    assert config["training"]["mixed_precision_param"] == "float32"
