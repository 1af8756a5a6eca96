"""Mistral family recipe: Llama's blocks with sliding-window attention on every layer.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), except that
MistralConfig has no attention_bias / mlp_bias (no biases anywhere), plus
  sliding_window -> SlidingWindow(window) (None: full causal attention; MistralConfig's
  default, 4096, when config.json leaves the field out).
"""

from __future__ import annotations

from typing import Any

from scaffolder.config_fields import ConfigFields
from scaffolder.families.common import (
    check_raw,
    common_fields,
    every_layer_sliding_window,
    read_attention_dropout,
    read_padding,
    read_sliding_window,
)
from scaffolder.features import Biases, Features
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec, normalize_with_transformers

# MistralConfig.sliding_window: what transformers uses when config.json has no such field.
SLIDING_WINDOW_DEFAULT = 4096
# MistralConfig's defaults for the fields ModelArgs reads (None: the field's fallback).
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": 8,
        "head_dim": None,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "sliding_window": SLIDING_WINDOW_DEFAULT,
        "pad_token_id": None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
    }
)


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("tie_word_embeddings",))
    read_sliding_window(config)
    hf = normalize_with_transformers(config, config["model_type"])
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=False,
        mlp_bias=False,
        features=Features(
            biases=Biases(fields=()),
            sliding_window=every_layer_sliding_window(hf),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
        ),
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="mistral",
        model_types=("mistral",),
        hf_architecture="MistralForCausalLM",
        hf_config_class="MistralConfig",
        description="Mistral: Llama's blocks with sliding-window attention on every layer.",
        summary=(
            "GQA",
            "explicit head_dim",
            "tied or untied embeddings",
            "sliding_window on every layer",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
