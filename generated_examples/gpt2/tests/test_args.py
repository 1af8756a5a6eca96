"""ModelArgs against config.json, and the train configs against ModelArgs."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from transformers import GPT2Config

from gpt2 import gpt2_configs
from gpt2.model.args import ModelArgs

from .conftest import PACKAGE_DIR

FULL_FLAVOR = "124M"


def test_full_flavor_is_the_source_config(hf_config: dict[str, Any]) -> None:
    assert ModelArgs.from_hf(hf_config) == gpt2_configs[FULL_FLAVOR]
    assert ModelArgs() == gpt2_configs[FULL_FLAVOR]


def test_to_hf_round_trips(debug_args: ModelArgs) -> None:
    assert ModelArgs.from_hf(debug_args.to_hf()) == debug_args


def test_to_hf_states_every_field_transformers_would_default_differently() -> None:
    """No RoPE fields: the config's own names (n_embd, ...) and zero dropouts."""
    config = gpt2_configs[FULL_FLAVOR].to_hf()
    assert GPT2Config(**config).to_dict()["n_embd"] == config["n_embd"]
    assert all(config[name] == 0.0 for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"))


def test_a_different_architecture_is_refused(hf_config: dict[str, Any]) -> None:
    flipped = dict(hf_config, tie_word_embeddings=not True)
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        ModelArgs.from_hf(flipped)


def load_toml(name: str) -> dict[str, Any]:
    with open(PACKAGE_DIR / "train_configs" / name, "rb") as f:
        return tomllib.load(f)


@pytest.mark.parametrize("name", ["debug_model.toml", "gpt2.toml"])
def test_train_configs_name_this_package_and_a_flavor(name: str) -> None:
    config = load_toml(name)
    assert config["model"]["name"] == "gpt2"
    args = gpt2_configs[config["model"]["flavor"]]
    assert config["training"]["seq_len"] <= args.max_seq_len
    parallelism = config["parallelism"]
    assert args.n_heads % parallelism["tensor_parallel_degree"] == 0
    assert args.n_kv_heads % parallelism["tensor_parallel_degree"] == 0
    assert args.n_layers >= parallelism["pipeline_parallel_degree"]


def test_full_size_config_uses_the_checkpoint_dtype_for_compute() -> None:
    config = load_toml("gpt2.toml")
    assert config["model"]["flavor"] == FULL_FLAVOR
    assert config["training"]["mixed_precision_param"] == "float32"
