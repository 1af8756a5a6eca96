"""Qwen2-MoE family recipe: Qwen2's attention with routed experts plus a gated shared expert.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), plus
  q/k/v biases, none on o_proj (qkv_bias, true in every published model; must stay true),
  num_experts -> Moe.num_experts, num_experts_per_tok -> Moe.top_k,
  moe_intermediate_size -> Moe.ffn_dim,
  shared_expert_intermediate_size -> Moe.shared_ffn_dim: a SwiGLU MLP every token passes
    through, scaled by sigmoid(shared_expert_gate(x)),
  norm_topk_prob -> Moe.renormalize,
  decoder_sparse_step, mlp_only_layers -> which layers are sparse; the others have a dense
    SwiGLU MLP of intermediate_size,
  router_aux_loss_coef -> Moe.aux_loss_coef.
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
from scaffolder.features import Biases, Features
from scaffolder.fields import read_bool, require
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec, normalize_with_transformers

# Qwen2MoeConfig's defaults for the fields ModelArgs reads (None: the field's fallback).
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": 16,
        "head_dim": None,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "qkv_bias": True,
        "use_sliding_window": False,
        "pad_token_id": None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "num_experts": 60,
        "num_experts_per_tok": 4,
        "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632,
        "norm_topk_prob": False,
        "decoder_sparse_step": 1,
        "mlp_only_layers": None,
        "router_aux_loss_coef": 0.001,
    },
    switches={"qkv_bias": True, "use_sliding_window": False},
)


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("tie_word_embeddings", "qkv_bias", "use_sliding_window"))
    require(
        config.get("qkv_bias", True),
        "qkv_bias",
        "false is not supported for qwen2_moe (every published model has q/k/v biases)",
    )
    require(
        not config.get("use_sliding_window", False),
        "use_sliding_window",
        "true is not supported for qwen2_moe (the published models train without windows); "
        "set it to false",
    )
    hf = normalize_with_transformers(config, config["model_type"])
    read_bool(hf, "qkv_bias")
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=False,
        mlp_bias=False,
        features=Features(
            biases=Biases(fields=(), qkv_only=True),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
            moe=read_moe(
                config,
                hf,
                experts_field="num_experts",
                ffn_field="moe_intermediate_size",
                renormalize_field="norm_topk_prob",
                shared=True,
                layered=True,
            ),
        ),
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="qwen2_moe",
        model_types=("qwen2_moe",),
        hf_architecture="Qwen2MoeForCausalLM",
        hf_config_class="Qwen2MoeConfig",
        description="Qwen2-MoE: Qwen2's attention with routed experts and a gated shared expert.",
        summary=(
            "GQA",
            "q/k/v biases",
            "experts: softmax top-k router (norm_topk_prob)",
            "shared expert with a sigmoid gate",
            "dense layers by decoder_sparse_step / mlp_only_layers",
            "router_aux_loss_coef",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
