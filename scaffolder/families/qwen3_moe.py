"""Qwen3-MoE family recipe: Qwen3's attention (per-head q/k norms) with mixture-of-experts MLPs.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), except that
  attention_bias -> attention_bias (q, k, v and o together; no MLP biases),
  q_norm / k_norm (no config field) -> QKNorm("per_head"),
plus the experts (Moe):
  num_experts -> Moe.num_experts (transformers 5 keeps it as num_local_experts),
  num_experts_per_tok -> Moe.top_k, moe_intermediate_size -> Moe.ffn_dim,
  norm_topk_prob -> Moe.renormalize (the top-k probabilities renormalized to sum to one),
  decoder_sparse_step, mlp_only_layers -> which layers are sparse; the others have a dense
    SwiGLU MLP of intermediate_size,
  router_aux_loss_coef -> Moe.aux_loss_coef.
Routing: softmax over every expert's router logit in float32, then the top-k.
use_sliding_window must be false (the published models' setting; the package has no windows).
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

# Qwen3MoeConfig's defaults for the fields ModelArgs reads (None: the field's fallback).
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": 4,
        "head_dim": None,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "use_sliding_window": False,
        "pad_token_id": None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "moe_intermediate_size": 768,
        "norm_topk_prob": False,
        "decoder_sparse_step": 1,
        "mlp_only_layers": None,
        "router_aux_loss_coef": 0.001,
    },
    switches={"use_sliding_window": False},
)


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("attention_bias", "tie_word_embeddings", "use_sliding_window"))
    require(
        not config.get("use_sliding_window", False),
        "use_sliding_window",
        "true is not supported for qwen3_moe (the published models train without windows); "
        "set it to false",
    )
    hf = normalize_with_transformers(config, config["model_type"])
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=read_bool(hf, "attention_bias", False),
        mlp_bias=False,
        features=Features(
            biases=Biases(fields=("attention_bias",)),
            qk_norm=QKNorm("per_head"),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
            moe=read_moe(
                config,
                hf,
                experts_field="num_experts",
                ffn_field="moe_intermediate_size",
                renormalize_field="norm_topk_prob",
                layered=True,
            ),
        ),
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="qwen3_moe",
        model_types=("qwen3_moe",),
        hf_architecture="Qwen3MoeForCausalLM",
        hf_config_class="Qwen3MoeConfig",
        description="Qwen3-MoE: Qwen3's attention with mixture-of-experts MLPs.",
        summary=(
            "GQA",
            "head_dim != hidden_size / heads",
            "per-head RMS q/k norm before RoPE",
            "experts: softmax top-k router (norm_topk_prob)",
            "dense layers by decoder_sparse_step / mlp_only_layers",
            "router_aux_loss_coef",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
