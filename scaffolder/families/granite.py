"""Granite family recipe: Llama's blocks with embedding, residual and attention multipliers.

config.json field -> spec field: as common_fields (scaffolder/families/common.py; attention_bias and
mlp_bias included), plus
  embedding_multiplier -> Multipliers.embedding: scales the token embeddings,
  residual_multiplier -> Multipliers.residual: scales each sublayer's output
    before its residual add,
  attention_multiplier -> Multipliers.attention: the softmax scale (instead of
    head_dim ** -0.5),
  logits_scaling -> Multipliers.logits: logits are divided by it,
  attention_dropout -> attention_dropout (Granite 3 trains with 0.1),
  pad_token_id -> the embedding's padding_idx.
"""

from __future__ import annotations

from typing import Any

from scaffolder.config_fields import ConfigFields
from scaffolder.families.common import (
    check_raw,
    common_fields,
    read_attention_dropout,
    read_padding,
)
from scaffolder.features import Features, Multipliers
from scaffolder.fields import read_bool, read_float
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec, normalize_with_transformers

# GraniteConfig's defaults for the fields ModelArgs reads (None: the field's fallback; it has no
# head_dim, transformers' model uses hidden_size // num_attention_heads).
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": None,
        "head_dim": None,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "embedding_multiplier": 1.0,
        "residual_multiplier": 1.0,
        "attention_multiplier": 1.0,
        "logits_scaling": 1.0,
        "pad_token_id": None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
    }
)
MULTIPLIERS = (
    "embedding_multiplier",
    "residual_multiplier",
    "attention_multiplier",
    "logits_scaling",
)


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config)
    for name in MULTIPLIERS:
        if name in config:
            read_float(config, name)
    hf = normalize_with_transformers(config, config["model_type"])
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=read_bool(hf, "attention_bias", False),
        mlp_bias=read_bool(hf, "mlp_bias", False),
        features=Features(
            multipliers=Multipliers(
                embedding=read_float(hf, "embedding_multiplier", 1.0),
                residual=read_float(hf, "residual_multiplier", 1.0),
                attention=read_float(hf, "attention_multiplier", 1.0),
                logits=read_float(hf, "logits_scaling", 1.0),
            ),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
        ),
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="granite",
        model_types=("granite",),
        hf_architecture="GraniteForCausalLM",
        hf_config_class="GraniteConfig",
        description="Granite: Llama's blocks with embedding, residual and attention multipliers.",
        summary=(
            "GQA",
            "embedding_multiplier, residual_multiplier, attention_multiplier, logits_scaling",
            "attention_dropout",
            "attention_bias",
            "mlp_bias",
            "pad_token_id padding_idx",
            "tied or untied embeddings",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
