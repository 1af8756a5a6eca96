"""Mixtral family recipe: Mistral's attention with a mixture of SwiGLU experts in every layer.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), no biases
anywhere (MixtralConfig has no bias switches), plus
  sliding_window -> SlidingWindow(window) on every layer (null: full causal attention),
  num_local_experts -> Moe.num_experts, num_experts_per_tok -> Moe.top_k,
  intermediate_size -> Moe.ffn_dim (each expert's hidden size; there is no dense MLP),
  router_aux_loss_coef -> Moe.aux_loss_coef.
Routing: softmax over every expert's router logit in float32, top-k, always renormalized.
Checkpoints name the mixture ``block_sparse_moe`` with per-expert ``w1``/``w3``/``w2`` and the
router ``gate``. router_jitter_noise (training-time noise on the router input) is not applied.
"""

from __future__ import annotations

from typing import Any

from scaffolder.config_fields import ConfigFields
from scaffolder.families.common import (
    check_raw,
    common_fields,
    every_layer_sliding_window,
    read_attention_dropout,
    read_moe,
    read_padding,
    read_sliding_window,
)
from scaffolder.features import Biases, Features, MoeLayout
from scaffolder.fields import read_float, require
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec, normalize_with_transformers

# MixtralConfig's defaults for the fields ModelArgs reads (None: the field's fallback).
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": 8,
        "head_dim": None,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "sliding_window": None,
        "pad_token_id": None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "router_aux_loss_coef": 0.001,
    }
)
LAYOUT = MoeLayout(module="block_sparse_moe", gate="w1", up="w3", down="w2")


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("tie_word_embeddings",))
    read_sliding_window(config)
    jitter = read_float(config, "router_jitter_noise", 0.0, positive=False)
    require(0.0 <= jitter < 1.0, "router_jitter_noise", f"must be in [0, 1), got {jitter}")
    hf = normalize_with_transformers(config, config["model_type"])
    warnings = ()
    if jitter:
        warnings = (
            f"router_jitter_noise {jitter} is not applied: the model routes without "
            "training-time noise on the router input",
        )
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
            moe=read_moe(
                config,
                hf,
                experts_field="num_local_experts",
                ffn_field="intermediate_size",
                layout=LAYOUT,
            ),
        ),
        warnings=warnings,
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="mixtral",
        model_types=("mixtral",),
        hf_architecture="MixtralForCausalLM",
        hf_config_class="MixtralConfig",
        description="Mixtral: Mistral's attention with a mixture of SwiGLU experts in every layer.",
        summary=(
            "GQA",
            "experts in every layer: softmax top-k router, renormalized",
            "router_aux_loss_coef",
            "sliding_window on every layer",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
