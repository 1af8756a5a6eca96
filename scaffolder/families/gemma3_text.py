"""Gemma 3 (text) recipe: Gemma 2's blocks with per-head q/k norms, a sliding-window layer pattern,
and separate RoPE for sliding (local) and full-attention (global) layers.

config.json field -> spec field: as gemma2 (scaffolder/families/gemma2.py), plus
  rope_parameters.full_attention (old: rope_theta, rope_scaling) -> rope,
  rope_parameters.sliding_attention (old: rope_local_base_freq) -> features local_rope_type,
  local_rope_theta, local_rope_factor,
  layer_types (old: sliding_window_pattern, default 6) -> features sliding_window_pattern,
  features qk_norm "per_head" (q_norm, k_norm: (1 + w) RMSNorm over head_dim).
transformers' Gemma3 ignores attn_logit_softcapping, so config.json must leave it null.
"""

from __future__ import annotations

from typing import Any

from scaffolder.errors import ConfigFieldError
from scaffolder.families.counted import CountedSpec
from scaffolder.families.gemma import (
    MEGATRON_WARNINGS,
    PARTS,
    check_gemma_raw,
    gemma_features,
    gemma_fields,
)
from scaffolder.families.gemma2 import (
    SANDWICH_NORM_WARNING,
    optional_positive,
    sandwich_block_counts,
    scale_warnings,
    sliding_window_pattern_features,
)
from scaffolder.families.llama import merge_features
from scaffolder.fields import read_float, read_int, require
from scaffolder.spec import RopeSpec, normalize_with_transformers

MODEL_TYPES = ("gemma3_text",)
HF_ARCHITECTURE = "Gemma3ForCausalLM"
HF_CONFIG_CLASS = "Gemma3TextConfig"
FEATURES = (
    "as gemma2 without attention soft-capping",
    "per-head q/k (1 + w) RMSNorm",
    "layer_types or sliding_window_pattern",
    "local (rope_local_base_freq) and global RoPE, default/linear each",
)
# RoPE variants per layer type that the generated rope part computes.
ROPE_TYPES = ("default", "linear")


def build(config: dict[str, Any]) -> CountedSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_gemma_raw(config, activation_field="hidden_activation", rope_types=ROPE_TYPES)
    scaling = config.get("rope_scaling")
    if isinstance(scaling, dict) and "type" in scaling and "rope_type" not in scaling:
        raise ConfigFieldError(
            "rope_scaling.type",
            "is ignored by transformers' Gemma3 (its rope_scaling takes rope_type); "
            "name the scaling rope_type",
        )
    if config.get("rope_local_base_freq") is not None:
        read_float(config, "rope_local_base_freq")
    hf = normalize_with_transformers(config, config["model_type"])
    require(
        hf.get("attn_logit_softcapping") is None,
        "attn_logit_softcapping",
        f"is {hf.get('attn_logit_softcapping')!r}, but transformers' Gemma3 never soft-caps "
        "attention logits; set it to null",
    )
    global_rope, local_rope = read_layer_ropes(hf)
    final_softcap = optional_positive(hf, "final_logit_softcapping")
    features = {
        **merge_features(
            gemma_features(hf, activation_field="hidden_activation"),
            sliding_window_pattern_features(hf),
        ),
        "sandwich_norm": True,
        "qk_norm": "per_head",
        "query_pre_attn_scalar": read_int(hf, "query_pre_attn_scalar"),
        "final_logit_softcapping": final_softcap,
        "local_rope_type": local_rope.type,
        "local_rope_theta": local_rope.theta,
        "local_rope_factor": local_rope.factor,
    }
    fields = gemma_fields(config, hf, activation_field="hidden_activation", rope=global_rope)
    warnings = [
        *MEGATRON_WARNINGS,
        SANDWICH_NORM_WARNING,
        *scale_warnings(features, fields),
        "Megatron YAML: one rotary base for all layers; the sliding layers' "
        "rope_local_base_freq is not expressed",
    ]
    if final_softcap is not None:
        warnings.append("Megatron YAML: no final logit soft-capping")
    return CountedSpec(
        family="gemma3_text",
        hf_architecture=HF_ARCHITECTURE,
        hf_config_class=HF_CONFIG_CLASS,
        parts={**PARTS, "rope": "rope_local_global", "block": "block_sandwich_norm"},
        features=features,
        warnings=tuple(warnings),
        **sandwich_block_counts(fields, qk_norm=True),
        **fields,
    )


def read_layer_ropes(hf: dict[str, Any]) -> tuple[RopeSpec, RopeSpec]:
    """(full-attention, sliding) RoPE settings from transformers' per-layer-type rope_parameters."""
    params = hf.get("rope_parameters")
    if not isinstance(params, dict):
        raise ConfigFieldError("rope_parameters", "must be an object keyed by layer type")
    return (
        read_layer_rope(params, "full_attention"),
        read_layer_rope(params, "sliding_attention"),
    )


def read_layer_rope(params: dict[str, Any], layer_type: str) -> RopeSpec:
    field = f"rope_parameters.{layer_type}"
    rope = params.get(layer_type)
    if not isinstance(rope, dict):
        raise ConfigFieldError(field, "must be an object with rope_type and rope_theta")
    rope_type = rope.get("rope_type", "default")
    require(
        rope_type in ROPE_TYPES,
        f"{field}.rope_type",
        f"unsupported rope type {rope_type!r}; supported: {', '.join(ROPE_TYPES)}",
    )
    theta = read_float(rope, "rope_theta")
    if rope_type == "default":
        return RopeSpec(type="default", theta=theta)
    factor = read_float(rope, "factor")
    require(factor >= 1.0, f"{field}.factor", f"must be >= 1.0, got {factor}")
    return RopeSpec(type="linear", theta=theta, factor=factor)
