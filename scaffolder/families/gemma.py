"""Gemma recipes: Gemma, Gemma 2 and Gemma 3 (text), one generation building on the other.

Gemma: Llama's layout with (1 + w) RMSNorm, sqrt(hidden)-scaled embeddings, GeGLU.
config.json field -> spec field: as common_fields (scaffolder/families/common.py), except
  hidden_act -> hidden_act: "gelu_pytorch_tanh" (transformers reads the legacy "gelu" as it too),
  head_dim, num_key_value_heads: required (GemmaConfig's defaults describe gemma-7b),
  pad_token_id -> ModelArgs.pad_token_id (the embedding row that gets no gradient),
  GemmaConfig has no mlp_bias: the MLP never has biases.
Features: norm "rmsnorm_1p" (GemmaRMSNorm: x * (1 + w), in float32), scale_embeddings (embeddings
times sqrt(hidden_size) in their own dtype), embedding_padding_idx.

Gemma 2: alternating sliding-window / full attention.

config.json field -> spec field: as Gemma, with the MLP activation
in hidden_activation (transformers' Gemma2 ignores hidden_act), plus features
  query_pre_attn_scalar -> attention scores scale by its -1/2 power,
  attn_logit_softcapping, final_logit_softcapping -> soft caps (null: none),
  sliding_window, layer_types (default: every 2nd layer full attention) -> sliding_window and
  sliding_window_pattern (every Nth layer attends fully, the others slide).

Gemma 3 (text): and separate RoPE for sliding (local) and full-attention (global) layers.

config.json field -> spec field: as Gemma 2, plus
  rope_parameters.full_attention (old: rope_theta, rope_scaling) -> rope,
  rope_parameters.sliding_attention (old: rope_local_base_freq) -> features local_rope_type,
  local_rope_theta, local_rope_factor,
  layer_types (old: sliding_window_pattern, default 6) -> features sliding_window_pattern,
  features qk_norm "per_head" (q_norm, k_norm: (1 + w) RMSNorm over head_dim).
transformers' Gemma3 ignores attn_logit_softcapping, so config.json must leave it null.
"""

from __future__ import annotations

from typing import Any

from scaffolder.config_fields import REQUIRED, ConfigFields
from scaffolder.errors import ConfigFieldError
from scaffolder.families.common import (
    CountedSpec,
    check_raw,
    common_fields,
    optional_positive,
    pattern_sliding_window,
    read_padding,
    sandwich_block_counts,
)
from scaffolder.features import (
    Biases,
    Features,
    FieldNames,
    LocalRope,
    Norm,
    Padding,
    QKNorm,
    Softcap,
)
from scaffolder.fields import read_bool, read_float, read_int, require
from scaffolder.recipe import Recipe
from scaffolder.spec import ROPE_TYPES, ArchSpec, RopeSpec, normalize_with_transformers

# Gemma's MLP activation: the tanh approximation of GELU, whatever name config.json uses for it.
GELU_TANH = "gelu_pytorch_tanh"
PARTS = {
    "rope": "rope",
    "attention": "attention",
    "feed_forward": "feed_forward_swiglu",
    "block": "block_pre_norm",
    "transformer": "transformer",
}
# Sizes transformers' Gemma config classes default to those of one particular checkpoint; a
# config.json must state them.
REQUIRED_FIELDS = ("num_key_value_heads", "head_dim")
# GemmaConfig's defaults for the fields ModelArgs reads; it reads the legacy "gelu" as the tanh
# approximation.
GEMMA_CONFIG_FIELDS = ConfigFields(
    required=(*REQUIRED, *REQUIRED_FIELDS),
    defaults={
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": GELU_TANH,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "pad_token_id": 0,
        "initializer_range": 0.02,
    },
    activation_aliases=("gelu",),
)


def build_gemma(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_gemma_raw(config, activation_field="hidden_act")
    hf = normalize_with_transformers(config, config["model_type"])
    require(
        hf.get("hidden_activation") in (None, GELU_TANH),
        "hidden_activation",
        f"unsupported value {hf.get('hidden_activation')!r}; transformers' Gemma uses hidden_act "
        f"({hf.get('hidden_act')!r}) and ignores this field, so it must be {GELU_TANH!r} or null",
    )
    return ArchSpec(
        **recipe.identity(),
        config_fields=GEMMA_CONFIG_FIELDS,
        parts=dict(PARTS),
        features=gemma_features(hf, activation_field="hidden_act"),
        **gemma_fields(config, hf, activation_field="hidden_act"),
    )


def check_gemma_raw(
    config: dict[str, Any], activation_field: str, rope_types: tuple[str, ...] = ROPE_TYPES
) -> None:
    """Checks on the fields as written that every Gemma generation shares."""
    check_raw(config, rope_types=rope_types, bool_fields=("attention_bias", "tie_word_embeddings"))
    for name in REQUIRED_FIELDS:
        read_int(config, name)
    activation = config.get(activation_field)
    # transformers' GemmaConfig rewrites the legacy "gelu" to the tanh approximation.
    allowed = (GELU_TANH, "gelu") if activation_field == "hidden_act" else (GELU_TANH,)
    if activation is not None and activation not in allowed:
        raise ConfigFieldError(
            activation_field,
            f"unsupported value {activation!r}; supported: {', '.join(allowed)}",
        )
    if config.get("use_bidirectional_attention"):
        raise ConfigFieldError(
            "use_bidirectional_attention",
            "is true: a bidirectional encoder is not a causal language model; set it to false",
        )
    if "pad_token_id" in config and config["pad_token_id"] is not None:
        read_int(config, "pad_token_id", minimum=0)


def gemma_fields(
    config: dict[str, Any],
    hf: dict[str, Any],
    activation_field: str,
    rope: RopeSpec | None = None,
) -> dict[str, Any]:
    """The ArchSpec fields every Gemma generation reads the same way.

    ``config`` is the config.json as written, ``hf`` the same after transformers' config class;
    ``rope`` replaces the one read from ``rope_parameters`` (Gemma 3 keys it by layer type).
    """
    return dict(
        **common_fields(
            config, hf, rope, activation_field=activation_field, activations=(GELU_TANH,)
        ),
        attention_bias=read_bool(hf, "attention_bias", False),
        mlp_bias=False,
    )


def gemma_features(hf: dict[str, Any], activation_field: str, **extra: Any) -> Features:
    """Features every Gemma generation shares (see the module docstring), plus ``extra``.

    ``activation_field`` names the config.json field of the MLP activation (``hidden_act`` in
    Gemma, ``hidden_activation`` from Gemma 2 on). The embedding always has a pad row (the
    debug flavor's is the first row); GemmaConfig has attention_bias only, the MLP never has
    biases.
    """
    return Features(
        norm=extra.pop("norm", Norm(kind="rmsnorm_1p")),
        biases=Biases(fields=("attention_bias",)),
        names=FieldNames(activation=activation_field),
        scale_embeddings=True,
        padding=read_padding(hf) or Padding(),
        **extra,
    )


# Gemma2Config's defaults: Gemma's, with the activation in hidden_activation; without
# layer_types, every 2nd layer attends fully.
GEMMA2_CONFIG_FIELDS = ConfigFields(
    required=GEMMA_CONFIG_FIELDS.required,
    defaults={
        **{k: v for k, v in GEMMA_CONFIG_FIELDS.defaults.items() if k != "hidden_act"},
        "hidden_activation": GELU_TANH,
        "query_pre_attn_scalar": 256,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        "sliding_window": 4096,
    },
    implied={"sliding_window_pattern": 2},
)


def build_gemma2(config: dict[str, Any], recipe: Recipe) -> CountedSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_gemma_raw(config, activation_field="hidden_activation")
    hf = normalize_with_transformers(config, config["model_type"])
    softcap = optional_positive(hf, "attn_logit_softcapping")
    final_softcap = optional_positive(hf, "final_logit_softcapping")
    features = gemma_features(
        hf,
        activation_field="hidden_activation",
        norm=Norm(kind="rmsnorm_1p", placement="sandwich"),
        sliding_window=pattern_sliding_window(hf),
        query_pre_attn_scalar=read_int(hf, "query_pre_attn_scalar"),
        softcap=Softcap(attention=softcap, final=final_softcap),
    )
    parts = {
        **PARTS,
        "block": "block_sandwich_norm",
        # Soft-capped scores are computed explicitly; without a cap, torch's fused attention.
        "attention": "attention_softcap" if softcap is not None else "attention",
    }
    fields = gemma_fields(config, hf, activation_field="hidden_activation")
    return CountedSpec(
        **recipe.identity(),
        config_fields=GEMMA2_CONFIG_FIELDS,
        parts=parts,
        features=features,
        **sandwich_block_counts(fields),
        **fields,
    )


# Gemma3TextConfig's defaults: Gemma 2's, with its own positions, rope bases and final cap; it
# builds layer_types from sliding_window_pattern.
GEMMA3_CONFIG_FIELDS = ConfigFields(
    required=GEMMA_CONFIG_FIELDS.required,
    defaults={
        **GEMMA2_CONFIG_FIELDS.defaults,
        "max_position_embeddings": 131072,
        "rope_theta": 1000000.0,
        "rope_local_base_freq": 10000.0,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "sliding_window_pattern": 6,
    },
)
# RoPE variants per layer type that the generated rope part computes (Gemma 3).
LAYER_ROPE_TYPES = ("default", "linear")


def build_gemma3_text(config: dict[str, Any], recipe: Recipe) -> CountedSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_gemma_raw(config, activation_field="hidden_activation", rope_types=LAYER_ROPE_TYPES)
    scaling = config.get("rope_scaling")
    if isinstance(scaling, dict) and "type" in scaling and "rope_type" not in scaling:
        raise ConfigFieldError(
            "rope_scaling.type",
            "is ignored by transformers' Gemma3 (its rope_scaling takes rope_type); "
            "name the scaling rope_type",
        )
    if config.get("rope_local_base_freq") is not None:
        read_float(config, "rope_local_base_freq")
    if config.get("sliding_window_pattern") is not None:  # the period of transformers' layer_types
        read_int(config, "sliding_window_pattern")
    hf = normalize_with_transformers(config, config["model_type"])
    require(
        hf.get("attn_logit_softcapping") is None,
        "attn_logit_softcapping",
        f"is {hf.get('attn_logit_softcapping')!r}, but transformers' Gemma3 never soft-caps "
        "attention logits; set it to null",
    )
    global_rope, local_rope = read_layer_ropes(hf)
    final_softcap = optional_positive(hf, "final_logit_softcapping")
    features = gemma_features(
        hf,
        activation_field="hidden_activation",
        norm=Norm(kind="rmsnorm_1p", placement="sandwich"),
        sliding_window=pattern_sliding_window(hf),
        qk_norm=QKNorm("per_head"),
        query_pre_attn_scalar=read_int(hf, "query_pre_attn_scalar"),
        softcap=Softcap(final=final_softcap, attention_field=False),
        local_rope=LocalRope(
            type=local_rope.type, theta=local_rope.theta, factor=local_rope.factor
        ),
    )
    fields = gemma_fields(config, hf, activation_field="hidden_activation", rope=global_rope)
    return CountedSpec(
        **recipe.identity(),
        config_fields=GEMMA3_CONFIG_FIELDS,
        parts={**PARTS, "rope": "rope_local_global", "block": "block_sandwich_norm"},
        features=features,
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
        rope_type in LAYER_ROPE_TYPES,
        f"{field}.rope_type",
        f"unsupported rope type {rope_type!r}; supported: {', '.join(LAYER_ROPE_TYPES)}",
    )
    theta = read_float(rope, "rope_theta")
    if rope_type == "default":
        return RopeSpec(type="default", theta=theta)
    factor = read_float(rope, "factor")
    require(factor >= 1.0, f"{field}.factor", f"must be >= 1.0, got {factor}")
    return RopeSpec(type="linear", theta=theta, factor=factor)


RECIPES = (
    Recipe(
        name="gemma",
        model_types=("gemma",),
        hf_architecture="GemmaForCausalLM",
        hf_config_class="GemmaConfig",
        description="Gemma: (1 + w) RMSNorm, sqrt(hidden)-scaled embeddings, GeGLU MLP.",
        summary=(
            "GQA/MQA",
            "explicit head_dim",
            "(1 + w) RMSNorm in float32",
            "embeddings x sqrt(hidden_size)",
            "GeGLU (tanh GELU)",
            "attention_bias",
            "pad_token_id padding_idx",
            "tied or untied embeddings",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build_gemma,
    ),
    Recipe(
        name="gemma2",
        model_types=("gemma2",),
        hf_architecture="Gemma2ForCausalLM",
        hf_config_class="Gemma2Config",
        description="Gemma 2: Gemma with norms after each sublayer, soft-capping, sliding layers.",
        summary=(
            "as gemma",
            "norms before and after each sublayer",
            "attn_logit_softcapping",
            "final_logit_softcapping",
            "query_pre_attn_scalar",
            "sliding/full layer_types (every Nth layer full)",
        ),
        build=build_gemma2,
    ),
    Recipe(
        name="gemma3_text",
        model_types=("gemma3_text",),
        hf_architecture="Gemma3ForCausalLM",
        hf_config_class="Gemma3TextConfig",
        description="Gemma 3 (text): Gemma 2 with q/k norms and local/global RoPE.",
        summary=(
            "as gemma2 without attention soft-capping",
            "per-head q/k (1 + w) RMSNorm",
            "layer_types or sliding_window_pattern",
            "local (rope_local_base_freq) and global RoPE, default/linear each",
        ),
        build=build_gemma3_text,
    ),
)
