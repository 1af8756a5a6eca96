"""Llama family recipe: RMSNorm, SwiGLU MLP, rotary attention with optional GQA.

config.json field -> spec field:
  vocab_size -> vocab_size, hidden_size -> dim, num_hidden_layers -> n_layers,
  num_attention_heads -> n_heads, num_key_value_heads -> n_kv_heads, head_dim -> head_dim,
  intermediate_size -> ffn_dim, max_position_embeddings -> max_seq_len, rms_norm_eps -> norm_eps,
  rope_theta / rope_scaling (old) or rope_parameters (new) -> rope,
  tie_word_embeddings, attention_bias, mlp_bias, hidden_act, initializer_range, torch_dtype.
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
from scaffolder.features import Features
from scaffolder.fields import read_bool
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec, normalize_with_transformers

# LlamaConfig's defaults for the fields ModelArgs reads (None: the field's fallback, e.g.
# num_attention_heads for num_key_value_heads).
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
        "pad_token_id": None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
    }
)


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config)
    hf = normalize_with_transformers(config, config["model_type"])
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=read_bool(hf, "attention_bias", False),
        mlp_bias=read_bool(hf, "mlp_bias", False),
        features=Features(attention_dropout=read_attention_dropout(hf), padding=read_padding(hf)),
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="llama",
        model_types=("llama",),
        hf_architecture="LlamaForCausalLM",
        hf_config_class="LlamaConfig",
        description="Llama: RMSNorm, SwiGLU MLP, rotary attention with optional GQA.",
        summary=(
            "GQA",
            "explicit head_dim",
            "tied or untied embeddings",
            "attention_bias",
            "mlp_bias",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
