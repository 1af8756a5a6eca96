"""Gemma 2 recipe: Gemma's layers normed before and after each sublayer, soft-capped logits, and
alternating sliding-window / full attention.

config.json field -> spec field: as gemma (scaffolder/families/gemma.py), with the MLP activation
in hidden_activation (transformers' Gemma2 ignores hidden_act), plus features
  query_pre_attn_scalar -> attention scores scale by its -1/2 power,
  attn_logit_softcapping, final_logit_softcapping -> soft caps (null: none),
  sliding_window, layer_types (default: every 2nd layer full attention) -> sliding_window and
  sliding_window_pattern (every Nth layer attends fully, the others slide).
"""

from __future__ import annotations

from typing import Any

from scaffolder.errors import ConfigFieldError
from scaffolder.families.counted import CountedSpec, attention_params, mlp_params
from scaffolder.families.gemma import (
    MEGATRON_WARNINGS,
    PARTS,
    check_gemma_raw,
    gemma_features,
    gemma_fields,
)
from scaffolder.families.llama import merge_features
from scaffolder.families.mistral import debug_sliding_window, read_sliding_window
from scaffolder.fields import read_float, read_int, require
from scaffolder.spec import normalize_with_transformers

MODEL_TYPES = ("gemma2",)
HF_ARCHITECTURE = "Gemma2ForCausalLM"
HF_CONFIG_CLASS = "Gemma2Config"
FEATURES = (
    "as gemma",
    "norms before and after each sublayer",
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "query_pre_attn_scalar",
    "sliding/full layer_types (every Nth layer full)",
)
SANDWICH_NORM_WARNING = (
    "Megatron YAML: no norms on the attention and MLP outputs (post_attention_layernorm, "
    "post_feedforward_layernorm)"
)
# The debug flavor keeps both layer kinds in its 4 layers (and mistral's DEBUG_SLIDING_WINDOW).
DEBUG_LAYERS = 4


def build(config: dict[str, Any]) -> CountedSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_gemma_raw(config, activation_field="hidden_activation")
    hf = normalize_with_transformers(config, config["model_type"])
    softcap = optional_positive(hf, "attn_logit_softcapping")
    final_softcap = optional_positive(hf, "final_logit_softcapping")
    features = {
        **merge_features(
            gemma_features(hf, activation_field="hidden_activation"),
            sliding_window_pattern_features(hf),
        ),
        "sandwich_norm": True,
        "query_pre_attn_scalar": read_int(hf, "query_pre_attn_scalar"),
        "attn_logit_softcapping": softcap,
        "final_logit_softcapping": final_softcap,
    }
    parts = {
        **PARTS,
        "block": "block_sandwich_norm",
        # Soft-capped scores are computed explicitly; without a cap, torch's fused attention.
        "attention": "attention_softcap" if softcap is not None else "attention",
    }
    fields = gemma_fields(config, hf, activation_field="hidden_activation")
    warnings = [*MEGATRON_WARNINGS, SANDWICH_NORM_WARNING, *scale_warnings(features, fields)]
    if softcap is not None or final_softcap is not None:
        warnings.append("Megatron YAML: no attention or final logit soft-capping")
    return CountedSpec(
        family="gemma2",
        hf_architecture=HF_ARCHITECTURE,
        hf_config_class=HF_CONFIG_CLASS,
        parts=parts,
        features=features,
        warnings=tuple(warnings),
        **sandwich_block_counts(fields),
        **fields,
    )


def sandwich_block_counts(fields: dict[str, Any], qk_norm: bool = False) -> dict[str, int]:
    """CountedSpec's counts: Gemma's block with four norms (and per-head q/k norms)."""
    dim, head_dim = fields["dim"], fields["head_dim"]
    block = attention_params(
        dim,
        fields["n_heads"],
        fields["n_kv_heads"],
        head_dim,
        qkv_bias=fields["attention_bias"],
        out_bias=fields["attention_bias"],
    )
    block += mlp_params(dim, fields["ffn_dim"], gated=True, bias=False) + 4 * dim
    if qk_norm:
        block += 2 * head_dim
    embeddings = fields["vocab_size"] * dim * (1 if fields["tie_word_embeddings"] else 2)
    return {"block_params": block, "other_params": embeddings + dim}


def scale_warnings(features: dict[str, Any], fields: dict[str, Any]) -> list[str]:
    """The Megatron warning when query_pre_attn_scalar is not head_dim (Megatron's scale)."""
    scalar = features["query_pre_attn_scalar"]
    if scalar == fields["head_dim"]:
        return []
    return [
        f"Megatron YAML: scores scale by query_pre_attn_scalar ** -0.5 ({scalar}); Megatron "
        f"scales by head_dim ** -0.5 ({fields['head_dim']})"
    ]


def optional_positive(hf: dict[str, Any], field: str) -> float | None:
    """A positive number, or None where config.json sets the field to null."""
    return None if hf.get(field) is None else read_float(hf, field)


def sliding_window_pattern_features(hf: dict[str, Any]) -> dict[str, Any]:
    """``sliding_window`` and the period N of ``layer_types`` (every Nth layer attends fully).

    transformers builds layer_types from a fixed rule when config.json has none; an explicit
    list must follow such a period, the only layouts the generated ModelArgs can describe at
    every size.
    """
    window = read_sliding_window(hf)
    require(
        window is not None,
        "sliding_window",
        "is null; the sliding_attention layers need a window (tokens)",
    )
    layer_types = hf.get("layer_types")
    n_layers = read_int(hf, "num_hidden_layers")
    if not isinstance(layer_types, list) or len(layer_types) != n_layers:
        raise ConfigFieldError("layer_types", f"must list one type per layer ({n_layers} layers)")
    unknown = sorted(set(layer_types) - {"sliding_attention", "full_attention"})
    require(
        not unknown,
        "layer_types",
        f"unsupported layer types {unknown}; supported: sliding_attention, full_attention",
    )
    require(
        "full_attention" in layer_types,
        "layer_types",
        "has no full_attention layer; this package needs every Nth layer to attend fully",
    )
    pattern = layer_types.index("full_attention") + 1
    require(
        pattern > 1,
        "layer_types",
        "has no sliding_attention layer before the first full_attention one; this package "
        "needs the sliding layers of the every-Nth-layer-full layout",
    )
    expected = [
        "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n_layers)
    ]
    require(
        layer_types == expected,
        "layer_types",
        f"is not every {pattern}th layer full attention and the others sliding; "
        "this package cannot express that layout",
    )
    return {
        "sliding_window": window,
        "sliding_window_layers": "sliding_window_pattern",
        "sliding_window_pattern": pattern,
        "debug": {
            **debug_sliding_window(window),
            "sliding_window_pattern": min(pattern, DEBUG_LAYERS),
        },
    }
