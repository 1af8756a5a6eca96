"""GraniteMoE family recipe: Granite's multipliers with a mixture of experts in every layer.

config.json field -> spec field: as common_fields (scaffolder/families/common.py; attention_bias
included, no MLP bias), plus
  embedding_multiplier, residual_multiplier, attention_multiplier, logits_scaling ->
    Multipliers (as Granite: embeddings scaled, sublayer outputs scaled, the softmax scale,
    logits divided),
  num_local_experts -> Moe.num_experts, num_experts_per_tok -> Moe.top_k,
  intermediate_size -> Moe.ffn_dim (each expert's hidden size; there is no dense MLP),
  router_aux_loss_coef -> Moe.aux_loss_coef,
  pad_token_id -> the embedding's padding_idx.
Routing: the top-k router logits, then a softmax over those k (``topk_softmax``).
Checkpoints hold each layer's experts fused: ``block_sparse_moe.input_linear.weight``
``[experts, 2 * ffn, dim]`` (gate rows, then up rows), ``output_linear.weight``
``[experts, dim, ffn]``, and the router as ``router.layer``.
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
from scaffolder.features import Biases, Features, MoeLayout, Multipliers
from scaffolder.fields import read_bool, read_float
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec, normalize_with_transformers

# GraniteMoeConfig's defaults for the fields ModelArgs reads (None: the field's fallback).
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
        "embedding_multiplier": 1.0,
        "residual_multiplier": 1.0,
        "attention_multiplier": 1.0,
        "logits_scaling": 1.0,
        "pad_token_id": None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "router_aux_loss_coef": 0.001,
    }
)
MULTIPLIERS = (
    "embedding_multiplier",
    "residual_multiplier",
    "attention_multiplier",
    "logits_scaling",
)
LAYOUT = MoeLayout(
    module="block_sparse_moe",
    router="router.layer",
    fused_input="input_linear",
    fused_output="output_linear",
)


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("attention_bias", "tie_word_embeddings"))
    for name in MULTIPLIERS:
        if name in config:
            read_float(config, name)
    hf = normalize_with_transformers(config, config["model_type"])
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=read_bool(hf, "attention_bias", False),
        mlp_bias=False,
        features=Features(
            biases=Biases(fields=("attention_bias",)),
            multipliers=Multipliers(
                embedding=read_float(hf, "embedding_multiplier", 1.0),
                residual=read_float(hf, "residual_multiplier", 1.0),
                attention=read_float(hf, "attention_multiplier", 1.0),
                logits=read_float(hf, "logits_scaling", 1.0),
            ),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
            moe=read_moe(
                config,
                hf,
                experts_field="num_local_experts",
                ffn_field="intermediate_size",
                routing="topk_softmax",
                layout=LAYOUT,
            ),
        ),
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="granitemoe",
        model_types=("granitemoe",),
        hf_architecture="GraniteMoeForCausalLM",
        hf_config_class="GraniteMoeConfig",
        description="GraniteMoE: Granite's multipliers with experts in every layer.",
        summary=(
            "GQA",
            "embedding_multiplier, residual_multiplier, attention_multiplier, logits_scaling",
            "experts in every layer: top-k logits, softmax over them",
            "fused expert tensors in checkpoints",
            "router_aux_loss_coef",
            "pad_token_id padding_idx",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
