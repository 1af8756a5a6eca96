"""DeepSeek-V2 family recipe: multi-head latent attention and softmax-scored routing (greedy or
group-limited) over many small experts with shared experts and dense first layers.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), plus
  q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim
    -> LatentAttention (multi-head latent attention; q_lora_rank null: one q_proj), RoPE on
    adjacent channel pairs,
  n_routed_experts -> Moe.num_experts, num_experts_per_tok -> Moe.top_k,
  moe_intermediate_size -> Moe.ffn_dim, n_shared_experts -> Moe.shared_ffn_dim
    (n_shared_experts * moe_intermediate_size, no gate),
  first_k_dense_replace -> Moe.first_dense (those first layers have a dense MLP of
    intermediate_size),
  topk_method, n_group, topk_group, routed_scaling_factor -> GroupRouting (softmax scores;
    greedy: top-k of every expert; group_limited_greedy: the topk_group best of n_group groups by
    their best score), weights not renormalized, scaled.
moe_layer_freq must be 1 and norm_topk_prob false (what transformers runs: it reads neither).
"""

from __future__ import annotations

from typing import Any

from scaffolder.config_fields import ConfigFields
from scaffolder.families.common import (
    check_raw,
    common_fields,
    read_attention_dropout,
    read_group_moe,
    read_latent_attention,
    read_padding,
)
from scaffolder.features import Biases, CheckpointLayout, Features, GroupRouting
from scaffolder.fields import read_choice, read_float, read_int, require
from scaffolder.recipe import Recipe
from scaffolder.spec import DEFAULT_PARTS, ArchSpec, normalize_with_transformers

# DeepseekV2Config's defaults for the fields ModelArgs reads (None: the field's fallback).
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
        "pad_token_id": None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "n_routed_experts": 64,
        "num_experts_per_tok": None,
        "moe_intermediate_size": 1407,
        "n_shared_experts": 2,
        "first_k_dense_replace": 0,
        "n_group": None,
        "topk_group": None,
        "topk_method": "greedy",
        "norm_topk_prob": False,
        "routed_scaling_factor": 1.0,
        "q_lora_rank": 1536,
        "kv_lora_rank": 512,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
    },
)
PARTS = {**DEFAULT_PARTS, "attention": "attention_latent"}
TOPK_METHODS = ("greedy", "group_limited_greedy")


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("tie_word_embeddings", "attention_bias", "norm_topk_prob"))
    scoring = config.get("scoring_func", "softmax")
    require(
        scoring == "softmax",
        "scoring_func",
        f"{scoring!r} is not supported for deepseek_v2 (transformers scores with a softmax)",
    )
    require(
        config.get("moe_layer_freq", 1) == 1,
        "moe_layer_freq",
        "only 1 is supported (every published model; transformers puts experts in every layer "
        "from first_k_dense_replace on)",
    )
    require(
        not config.get("norm_topk_prob", False),
        "norm_topk_prob",
        "true is not supported for deepseek_v2 (transformers never renormalizes its weights); "
        "set it to false",
    )
    hf = normalize_with_transformers(config, config["model_type"])
    method = read_choice(hf, "topk_method", TOPK_METHODS)
    grouped = method == "group_limited_greedy"
    routing = GroupRouting(
        scoring="softmax",
        n_group=read_int(hf, "n_group") if grouped else 1,
        topk_group=read_int(hf, "topk_group") if grouped else 1,
        scaling_factor=read_float(hf, "routed_scaling_factor"),
        grouped=grouped,
        method=method,
    )
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=False,
        mlp_bias=False,
        parts=dict(PARTS),
        features=Features(
            biases=Biases(fields=("attention_bias",)),
            # DeepseekV2ForCausalLM._keep_in_fp32_modules_strict: the router's weight stays
            # float32 in bf16 checkpoints.
            checkpoint=CheckpointLayout(float32=("mlp.gate.weight",)),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
            latent_attention=read_latent_attention(hf, interleaved=True),
            moe=read_group_moe(config, hf, routing, renormalize=False),
        ),
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="deepseek_v2",
        model_types=("deepseek_v2",),
        hf_architecture="DeepseekV2ForCausalLM",
        hf_config_class="DeepseekV2Config",
        description="DeepSeek-V2: multi-head latent attention; softmax routing, greedy or "
        "group-limited; shared experts; dense first layers.",
        summary=(
            "multi-head latent attention (q_lora_rank, kv_lora_rank), interleaved RoPE",
            "experts: softmax scores, topk_method greedy / group_limited_greedy, "
            "routed_scaling_factor",
            "n_shared_experts, first_k_dense_replace",
            "rope default/linear/dynamic/llama3/yarn (mscale_all_dim scales the scores)",
        ),
        build=build,
    ),
)
