"""Qwen2 family recipe: Llama's blocks with q/k/v biases and sliding windows on the top layers.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), except that
Qwen2Config has no attention_bias / mlp_bias: q_proj, k_proj and v_proj always have biases,
o_proj and the MLP never (Biases(qkv_only=True)). Sliding windows, as transformers 5 decides them:
  use_sliding_window (default false) turns sliding_window (default 4096) on; then layers
  max_window_layers (default 28) and up slide, the layers below attend fully. layer_types, when
  given, overrides that and must read full_attention ... sliding_attention ... (the only pattern
  max_window_layers can state) -> SlidingWindow(window, max_window_layers).
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
from scaffolder.features import Biases, Features
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec, normalize_with_transformers

# Qwen2Config's defaults (the same in Qwen3Config) for fields a config.json may leave out.
SLIDING_WINDOW_DEFAULT = 4096
MAX_WINDOW_LAYERS_DEFAULT = 28
# Qwen2Config's defaults for the fields ModelArgs reads (None: the field's fallback; Qwen2Config
# has no head_dim, transformers' model uses hidden_size // num_attention_heads).
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": 32,
        "head_dim": None,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
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
    check_raw(config, bool_fields=("tie_word_embeddings",))
    check_raw_max_window_layers(config)
    hf = normalize_with_transformers(config, config["model_type"])
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=False,
        mlp_bias=False,
        features=Features(
            biases=Biases(fields=(), qkv_only=True),
            sliding_window=max_window_layers_sliding_window(hf),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
        ),
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="qwen2",
        model_types=("qwen2",),
        hf_architecture="Qwen2ForCausalLM",
        hf_config_class="Qwen2Config",
        description="Qwen2: Llama's blocks, q/k/v biases, sliding windows on the top layers.",
        summary=(
            "GQA",
            "tied or untied embeddings",
            "q/k/v biases (no o_proj bias)",
            "sliding_window on layers >= max_window_layers (use_sliding_window)",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
