"""gpt-oss family recipe: attention with sinks, alternating sliding and full layers, and biased
experts with a clamped SwiGLU.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), plus
  attention_bias (default true) -> q/k/v/o biases,
  sliding_window, layer_types -> SlidingWindow(window, sliding_window_pattern layout): gpt-oss
    alternates sliding and full layers (every 2nd layer attends fully),
  num_local_experts -> Moe.num_experts, num_experts_per_tok -> Moe.top_k,
  intermediate_size -> Moe.ffn_dim (each expert's hidden size; there is no dense MLP),
  router_aux_loss_coef -> Moe.aux_loss_coef,
  swiglu_limit, swiglu_alpha -> Moe.swiglu_limit / swiglu_alpha (the clamped SwiGLU),
  rope_scaling (YaRN in the published models) -> the spec's rope,
  pad_token_id -> the embedding's padding_idx.
Every attention layer has ``sinks``: one learned logit per query head joined to the softmax.
Routing: the router (with a bias) takes the top-k logits and a softmax over those
(``topk_softmax``). Checkpoints hold the experts stacked as transformers keeps them:
``mlp.experts.gate_up_proj`` ``[experts, hidden, 2 * ffn]`` (gate and up interleaved column by
column), ``down_proj`` ``[experts, ffn, hidden]`` and their ``_bias`` tensors; the hub's files
store them as MXFP4 ``_blocks`` / ``_scales``, which the adapter dequantizes on import
(runtime.mxfp4).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from scaffolder.config_fields import ConfigFields
from scaffolder.families.common import (
    check_raw,
    common_fields,
    pattern_sliding_window,
    read_attention_dropout,
    read_moe,
    read_padding,
)
from scaffolder.features import Biases, Features, MoeLayout
from scaffolder.fields import read_bool, read_float, require
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec, normalize_with_transformers

# GptOssConfig's defaults for the fields ModelArgs reads (None: the field's fallback). They are
# gpt-oss-120b's sizes (36 layers, 128 experts); gpt-oss-20b's config.json states its own.
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": 8,
        "head_dim": 64,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 150000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": True,
        "sliding_window": 128,
        "pad_token_id": None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "num_local_experts": 128,
        "num_experts_per_tok": 4,
        "router_aux_loss_coef": 0.001,
        "swiglu_limit": 7.0,
        "swiglu_alpha": 1.702,
    },
    implied={"sliding_window_pattern": 2},
    rope_default={
        "rope_type": "yarn",
        "factor": 32.0,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "truncate": False,
        "original_max_position_embeddings": 4096,
    },
)
LAYOUT = MoeLayout(
    module="mlp",
    router="router",
    fused_input="gate_up_proj",
    fused_output="down_proj",
    interleaved=True,
    mxfp4=True,
)
# The debug flavor's clamp: random weights at initializer_range never reach 7.0, so the
# generated tests clamp at this much smaller limit to see the clamp act.
DEBUG_SWIGLU_LIMIT = 0.25


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("attention_bias", "tie_word_embeddings"))
    for name in ("swiglu_limit", "swiglu_alpha"):
        if name in config:
            read_float(config, name)
    hf = normalize_with_transformers(config, config["model_type"])
    attention_bias = read_bool(hf, "attention_bias", True)
    limit = read_float(hf, "swiglu_limit")
    alpha = read_float(hf, "swiglu_alpha")
    moe = read_moe(
        config,
        hf,
        experts_field="num_local_experts",
        ffn_field="intermediate_size",
        routing="topk_softmax",
        layout=LAYOUT,
    )
    moe = dataclasses.replace(
        moe,
        router_bias=True,
        expert_biases=True,
        activation="clamped_swiglu",
        swiglu_limit=limit,
        swiglu_alpha=alpha,
    )
    fields = common_fields(config, hf)
    require(
        fields["rope"] is not None,
        "rope_scaling",
        "gpt-oss rotates with RoPE; give rope_scaling (YaRN) or leave it out",
    )
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=attention_bias,
        mlp_bias=False,
        parts={
            "rope": "rope",
            "attention": "attention_sinks",
            "feed_forward": "feed_forward_swiglu",
            "block": "block_pre_norm",
            "transformer": "transformer",
        },
        features=Features(
            biases=Biases(fields=("attention_bias",)),
            sliding_window=pattern_sliding_window(hf),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
            attention_sinks=True,
            moe=moe,
        ),
        debug_extra={"swiglu_limit": min(limit, DEBUG_SWIGLU_LIMIT)},
        **fields,
    )


RECIPES = (
    Recipe(
        name="gpt_oss",
        model_types=("gpt_oss",),
        hf_architecture="GptOssForCausalLM",
        hf_config_class="GptOssConfig",
        description="gpt-oss: attention sinks, alternating sliding/full layers, biased experts "
        "with a clamped SwiGLU.",
        summary=(
            "GQA, q/k/v/o biases",
            "attention sinks (one learned logit per head)",
            "sliding_window on every other layer (layer_types)",
            "experts in every layer: biased router, top-k logits, softmax over them",
            "expert biases, clamped SwiGLU (swiglu_limit, swiglu_alpha)",
            "stacked expert tensors in checkpoints; MXFP4 import",
            "router_aux_loss_coef",
            "rope yarn (and default/linear/dynamic/llama3)",
        ),
        build=build,
    ),
)
