"""ModelArgs against config.json, and the train configs against ModelArgs."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from transformers import DeepseekV3Config

from deepseek_v3 import deepseek_v3_configs
from deepseek_v3.model.args import ModelArgs

from .conftest import PACKAGE_DIR

FULL_FLAVOR = "671B"


def test_full_flavor_is_the_source_config(hf_config: dict[str, Any]) -> None:
    assert ModelArgs.from_hf(hf_config) == deepseek_v3_configs[FULL_FLAVOR]
    assert ModelArgs() == deepseek_v3_configs[FULL_FLAVOR]


def test_to_hf_round_trips(debug_args: ModelArgs) -> None:
    assert ModelArgs.from_hf(debug_args.to_hf()) == debug_args


def test_old_and_new_rope_styles_agree() -> None:
    """The config class's old-style rope fields read as its rope_parameters do."""
    new_style = deepseek_v3_configs[FULL_FLAVOR].to_hf()
    old_style = dict(new_style)
    rope = dict(old_style.pop("rope_parameters"))
    old_style["rope_theta"] = rope.pop("rope_theta")
    old_style["rope_scaling"] = {"type": rope.pop("rope_type"), **rope}
    assert ModelArgs.from_hf(old_style) == ModelArgs.from_hf(new_style)
    # transformers reads both the same way too.
    old, new = DeepseekV3Config(**old_style), DeepseekV3Config(**new_style)
    # (It keeps the old "type" spelling next to rope_type.)
    assert {k: v for k, v in old.rope_parameters.items() if k != "type"} == new.rope_parameters


def test_a_different_architecture_is_refused(hf_config: dict[str, Any]) -> None:
    flipped = dict(hf_config, tie_word_embeddings=not False)
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        ModelArgs.from_hf(flipped)


def load_toml(name: str) -> dict[str, Any]:
    with open(PACKAGE_DIR / "train_configs" / name, "rb") as f:
        return tomllib.load(f)


@pytest.mark.parametrize("name", ["debug_model.toml", "deepseek_v3.toml"])
def test_train_configs_name_this_package_and_a_flavor(name: str) -> None:
    config = load_toml(name)
    assert config["model"]["name"] == "deepseek_v3"
    args = deepseek_v3_configs[config["model"]["flavor"]]
    assert config["training"]["seq_len"] <= args.max_seq_len
    parallelism = config["parallelism"]
    assert args.n_heads % parallelism["tensor_parallel_degree"] == 0
    assert args.n_kv_heads % parallelism["tensor_parallel_degree"] == 0
    assert args.n_layers >= parallelism["pipeline_parallel_degree"]


def test_full_size_config_uses_the_checkpoint_dtype_for_compute() -> None:
    config = load_toml("deepseek_v3.toml")
    assert config["model"]["flavor"] == FULL_FLAVOR
    assert config["training"]["mixed_precision_param"] == "bfloat16"
