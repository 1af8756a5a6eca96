"""DeepSeek-V3 family recipe: multi-head latent attention and sigmoid-scored, group-limited
routing over many small experts with shared experts and dense first layers.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), plus
  q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim
    -> LatentAttention (multi-head latent attention; q_lora_rank null: one q_proj),
  rope_interleave -> LatentAttention.interleaved (RoPE on adjacent channel pairs),
  n_routed_experts -> Moe.num_experts, num_experts_per_tok -> Moe.top_k,
  moe_intermediate_size -> Moe.ffn_dim, n_shared_experts -> Moe.shared_ffn_dim
    (n_shared_experts * moe_intermediate_size, no gate),
  first_k_dense_replace -> Moe.first_dense (those first layers have a dense MLP of
    intermediate_size),
  n_group, topk_group, norm_topk_prob, routed_scaling_factor -> GroupRouting (sigmoid scores,
    the best topk_group of n_group groups by their best two scores, renormalized, scaled),
  e_score_correction_bias (a checkpoint buffer, no config field) -> the router's selection bias,
    which auxiliary-loss-free balancing updates in training; it and the router's weight stay
    float32 in exports of any dtype (CheckpointLayout.float32), as transformers keeps them.
num_nextn_predict_layers (multi-token prediction) is not generated: transformers does not run it
either. quantization_config (FP8 hub weights) is read by checkpoint import, which dequantizes.
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
from scaffolder.fields import read_bool, read_float, read_int, require
from scaffolder.recipe import Recipe
from scaffolder.spec import DEFAULT_PARTS, ArchSpec, normalize_with_transformers

# DeepseekV3Config's defaults for the fields ModelArgs reads (None: the field's fallback).
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": 128,
        "head_dim": None,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "pad_token_id": None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "n_routed_experts": 256,
        "num_experts_per_tok": 8,
        "moe_intermediate_size": 2048,
        "n_shared_experts": 1,
        "first_k_dense_replace": 3,
        "n_group": 8,
        "topk_group": 4,
        "norm_topk_prob": True,
        "routed_scaling_factor": 2.5,
        "q_lora_rank": 1536,
        "kv_lora_rank": 512,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
        "rope_interleave": True,
    },
)
PARTS = {**DEFAULT_PARTS, "attention": "attention_latent"}


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("tie_word_embeddings", "attention_bias", "rope_interleave"))
    scoring = config.get("scoring_func", "sigmoid")
    require(
        scoring == "sigmoid",
        "scoring_func",
        f"{scoring!r} is not supported for deepseek_v3 (transformers scores with a sigmoid)",
    )
    hf = normalize_with_transformers(config, config["model_type"])
    routing = GroupRouting(
        scoring="sigmoid",
        n_group=read_int(hf, "n_group"),
        topk_group=read_int(hf, "topk_group"),
        scaling_factor=read_float(hf, "routed_scaling_factor"),
        top2=True,
        bias_name="e_score_correction_bias",
    )
    warnings = ()
    mtp = read_int(config, "num_nextn_predict_layers", 0, minimum=0)
    if mtp:
        warnings += (
            f"num_nextn_predict_layers {mtp}: the multi-token prediction layers are not generated "
            "(transformers does not run them either); importing a checkpoint skips their tensors",
        )
    if config.get("quantization_config") is not None:
        warnings += (
            "quantization_config: the package trains in the checkpoint dtype; importing the hub's "
            "FP8 weights dequantizes them (weight_scale_inv)",
        )
    return ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=False,
        mlp_bias=False,
        parts=dict(PARTS),
        features=Features(
            biases=Biases(fields=("attention_bias",)),
            checkpoint=CheckpointLayout(
                extra_layers=bool(mtp),
                # DeepseekV3ForCausalLM._keep_in_fp32_modules_strict: the router's weight and
                # selection bias stay float32 in bf16 checkpoints.
                float32=("mlp.gate.weight", "mlp.gate.e_score_correction_bias"),
            ),
            attention_dropout=read_attention_dropout(hf),
            padding=read_padding(hf),
            latent_attention=read_latent_attention(
                hf, interleaved=read_bool(hf, "rope_interleave", True)
            ),
            moe=read_group_moe(config, hf, routing, renormalize=read_bool(hf, "norm_topk_prob")),
        ),
        warnings=warnings,
        **common_fields(config, hf),
    )


RECIPES = (
    Recipe(
        name="deepseek_v3",
        model_types=("deepseek_v3",),
        hf_architecture="DeepseekV3ForCausalLM",
        hf_config_class="DeepseekV3Config",
        description="DeepSeek-V3: multi-head latent attention; sigmoid, group-limited routing "
        "with a selection bias; shared experts; dense first layers.",
        summary=(
            "multi-head latent attention (q_lora_rank, kv_lora_rank), interleaved RoPE",
            "experts: sigmoid scores, n_group / topk_group, norm_topk_prob, routed_scaling_factor",
            "e_score_correction_bias: auxiliary-loss-free balancing",
            "n_shared_experts, first_k_dense_replace",
            "rope default/linear/dynamic/llama3/yarn (mscale_all_dim scales the scores)",
        ),
        build=build,
    ),
)
