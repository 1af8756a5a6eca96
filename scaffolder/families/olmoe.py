"""OLMoE family recipe: pre-norm blocks with q/k norms over whole projections and experts.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), except that
  attention_bias -> attention_bias (q/k/v/o; OlmoeConfig has no MLP bias),
  pad_token_id (OlmoeConfig's default: 1) -> the embedding's padding_idx,
  q_norm / k_norm (no config field) -> QKNorm("projection"): RMSNorm over the whole q and k
    projections, all heads at once, before RoPE,
plus the experts (Moe), in every layer:
  num_experts -> Moe.num_experts, num_experts_per_tok -> Moe.top_k,
  intermediate_size -> Moe.ffn_dim (each expert's hidden size; there is no dense MLP),
  norm_topk_prob -> Moe.renormalize, router_aux_loss_coef -> Moe.aux_loss_coef.
clip_qkv must be null (the published models' setting; the package does not clamp q/k/v).
"""

from __future__ import annotations

from typing import Any

from scaffolder.config_fields import ConfigFields
from scaffolder.families.common import (
    check_raw,
    common_fields,
    read_attention_dropout,
    read_moe,
    read_padding,
)
from scaffolder.features import Biases, Features, QKNorm
from scaffolder.fields import read_bool, require
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec, normalize_with_transformers

# OlmoeConfig's default pad_token_id, for config.json files that leave it out.
PAD_TOKEN_ID_DEFAULT = 1
# OlmoeConfig's defaults for the fields ModelArgs reads (None: the field's fallback).
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": None,
        "head_dim": None,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "pad_token_id": PAD_TOKEN_ID_DEFAULT,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "num_experts": 64,
        "num_experts_per_tok": 8,
        "norm_topk_prob": False,
        "router_aux_loss_coef": 0.01,
    }
)


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("attention_bias", "tie_word_embeddings", "norm_topk_prob"))
    require(
        config.get("clip_qkv") is None,
        "clip_qkv",
        f"{config.get('clip_qkv')!r} is not supported (the published OLMoE models leave it "
        "null); set it to null",
    )
    hf = normalize_with_transformers(config, config["model_type"])
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=read_bool(hf, "attention_bias", False),
        mlp_bias=False,
        features=Features(
            biases=Biases(fields=("attention_bias",)),
            qk_norm=QKNorm("projection"),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
            moe=read_moe(
                config,
                hf,
                experts_field="num_experts",
                ffn_field="intermediate_size",
                renormalize_field="norm_topk_prob",
            ),
        ),
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="olmoe",
        model_types=("olmoe",),
        hf_architecture="OlmoeForCausalLM",
        hf_config_class="OlmoeConfig",
        description="OLMoE: q/k norms over whole projections, experts in every layer.",
        summary=(
            "GQA or MHA",
            "RMS q/k norm over the whole projections before RoPE",
            "experts in every layer: softmax top-k router (norm_topk_prob)",
            "router_aux_loss_coef",
            "pad_token_id padding_idx",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
