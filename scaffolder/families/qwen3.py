"""Qwen3 family recipe: Qwen2's layout with per-head RMS q/k norms before RoPE, no fixed biases.

config.json field -> spec field: as qwen2 (scaffolder/families/qwen2.py, sliding windows
included), except that
  attention_bias -> attention_bias (q, k, v and o together; Qwen3Config has no mlp_bias),
  head_dim -> head_dim (Qwen3Config's default is 128, not hidden_size / num_attention_heads),
  q_norm / k_norm (no config field) -> QKNorm("per_head"): RMSNorm over each
    head's head_dim, eps rms_norm_eps, applied to queries and keys before RoPE.
"""

from __future__ import annotations

from typing import Any

from scaffolder.config_fields import ConfigFields
from scaffolder.families.common import (
    check_raw,
    check_raw_max_window_layers,
    common_fields,
    max_window_layers_sliding_window,
    read_attention_dropout,
    read_padding,
)
from scaffolder.features import Biases, Features, QKNorm
from scaffolder.fields import read_bool
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec, normalize_with_transformers

# Qwen3Config's defaults for fields a config.json may leave out.
SLIDING_WINDOW_DEFAULT = 4096
MAX_WINDOW_LAYERS_DEFAULT = 28
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": 32,
        "head_dim": 128,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "use_sliding_window": False,
        "sliding_window": SLIDING_WINDOW_DEFAULT,
        "max_window_layers": MAX_WINDOW_LAYERS_DEFAULT,
        "pad_token_id": None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
    }
)


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("attention_bias", "tie_word_embeddings"))
    check_raw_max_window_layers(config)
    hf = normalize_with_transformers(config, config["model_type"])
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=read_bool(hf, "attention_bias", False),
        mlp_bias=False,
        features=Features(
            biases=Biases(fields=("attention_bias",)),
            qk_norm=QKNorm("per_head"),
            sliding_window=max_window_layers_sliding_window(hf),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
        ),
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="qwen3",
        model_types=("qwen3",),
        hf_architecture="Qwen3ForCausalLM",
        hf_config_class="Qwen3Config",
        description="Qwen3: Qwen2's layout with per-head RMS q/k norms, no fixed biases.",
        summary=(
            "GQA",
            "head_dim != hidden_size / heads",
            "per-head RMS q/k norm before RoPE",
            "attention_bias",
            "tied or untied embeddings",
            "sliding_window on layers >= max_window_layers (use_sliding_window)",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
