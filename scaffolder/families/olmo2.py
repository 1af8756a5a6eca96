"""OLMo 2 family recipe: norms on the attention and MLP outputs, q/k norms over whole projections.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), except that
  attention_bias -> attention_bias (q/k/v/o; Olmo2Config has no mlp_bias: the MLP has none),
  pad_token_id (Olmo2Config's default: 1) -> the embedding's padding_idx.
Structure (no config field): each block is ``h = x + norm(attention(x))``, then
``h + norm(mlp(h))`` (post_attention_layernorm, post_feedforward_layernorm;
``Norm(placement="post")``), and q_norm / k_norm are RMSNorms over the whole q and k
projections, all heads at once, before RoPE (``QKNorm("projection")``; eps rms_norm_eps).
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
from scaffolder.features import Biases, Features, Norm, QKNorm
from scaffolder.fields import read_bool
from scaffolder.recipe import Recipe
from scaffolder.spec import DEFAULT_PARTS, ArchSpec, normalize_with_transformers

# Olmo2Config's default pad_token_id, for config.json files that leave it out.
PAD_TOKEN_ID_DEFAULT = 1
# Olmo2Config's defaults for the fields ModelArgs reads (None: the field's fallback; it has no
# head_dim, transformers' model uses hidden_size // num_attention_heads).
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": None,
        "head_dim": None,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "pad_token_id": PAD_TOKEN_ID_DEFAULT,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
    }
)


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("attention_bias", "tie_word_embeddings"))
    hf = normalize_with_transformers(config, config["model_type"])
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=read_bool(hf, "attention_bias", False),
        mlp_bias=False,
        parts={**DEFAULT_PARTS, "block": "block_post_norm"},
        features=Features(
            norm=Norm(placement="post"),
            biases=Biases(fields=("attention_bias",)),
            qk_norm=QKNorm("projection"),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
        ),
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="olmo2",
        model_types=("olmo2",),
        hf_architecture="Olmo2ForCausalLM",
        hf_config_class="Olmo2Config",
        description="OLMo 2: norms on attention and MLP outputs, q/k norms over whole projections.",
        summary=(
            "GQA or MHA",
            "RMSNorm after attention and MLP (inside the residual), none before",
            "RMS q/k norm over the whole projections before RoPE",
            "attention_bias",
            "pad_token_id padding_idx",
            "tied or untied embeddings",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
