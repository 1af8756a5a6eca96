"""Gemma family recipe: Llama's layout with (1 + w) RMSNorm, sqrt(hidden)-scaled embeddings, GeGLU.

config.json field -> spec field: as llama (scaffolder/families/llama.py), except
  hidden_act -> hidden_act: "gelu_pytorch_tanh" (transformers reads the legacy "gelu" as it too),
  head_dim, num_key_value_heads: required (GemmaConfig's defaults describe gemma-7b),
  pad_token_id -> ModelArgs.pad_token_id (the embedding row that gets no gradient),
  GemmaConfig has no mlp_bias: the MLP never has biases.
Features: norm "rmsnorm_1p" (GemmaRMSNorm: x * (1 + w), in float32), scale_embeddings (embeddings
times sqrt(hidden_size) in their own dtype), embedding_padding_idx.
"""

from __future__ import annotations

from typing import Any

from scaffolder.errors import ConfigFieldError
from scaffolder.families.llama import check_raw, common_fields, merge_features, padding_features
from scaffolder.fields import read_bool, read_int, require
from scaffolder.spec import ROPE_TYPES, ArchSpec, RopeSpec, normalize_with_transformers

MODEL_TYPES = ("gemma",)
HF_ARCHITECTURE = "GemmaForCausalLM"
HF_CONFIG_CLASS = "GemmaConfig"
FEATURES = (
    "GQA/MQA",
    "explicit head_dim",
    "(1 + w) RMSNorm in float32",
    "embeddings x sqrt(hidden_size)",
    "GeGLU (tanh GELU)",
    "attention_bias",
    "pad_token_id padding_idx",
    "tied or untied embeddings",
    "rope default/linear/dynamic/llama3",
)
# Gemma's MLP activation: the tanh approximation of GELU, whatever name config.json uses for it.
GELU_TANH = "gelu_pytorch_tanh"
PARTS = {
    "rope": "rope",
    "attention": "attention",
    "feed_forward": "feed_forward_swiglu",
    "block": "block_pre_norm",
    "transformer": "transformer",
    "overview": "overview_gemma",
    "args": "args_gemma",
}
# Sizes transformers' Gemma config classes default to those of one particular checkpoint; a
# config.json must state them.
REQUIRED_FIELDS = ("num_key_value_heads", "head_dim")
# What Megatron-LM cannot express of every Gemma (the generated YAML says so too).
MEGATRON_WARNINGS = (
    "Megatron YAML: no GeGLU (tanh GELU) MLP in Megatron's arguments; the preset uses SwiGLU "
    "(same shapes, SiLU gate)",
    "Megatron YAML: Megatron does not scale embeddings by sqrt(hidden_size)",
)


def build(config: dict[str, Any]) -> ArchSpec:
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
        family="gemma",
        hf_architecture=HF_ARCHITECTURE,
        hf_config_class=HF_CONFIG_CLASS,
        parts=dict(PARTS),
        features=gemma_features(hf, activation_field="hidden_act"),
        warnings=MEGATRON_WARNINGS,
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


def gemma_features(hf: dict[str, Any], activation_field: str) -> dict[str, Any]:
    """Features every Gemma generation shares; see the module docstring.

    ``activation_field`` names the config.json field of the MLP activation (``hidden_act`` in
    Gemma, ``hidden_activation`` from Gemma 2 on).
    """
    return merge_features(
        {
            "norm": "rmsnorm_1p",
            "scale_embeddings": True,
            "embedding_padding_idx": True,
            "pad_token_id": None,
            "activation_field": activation_field,
            # GemmaConfig has attention_bias only; the MLP never has biases.
            "bias_fields": ("attention_bias",),
        },
        # The pad row, when there is one (the debug flavor's is the first row).
        padding_features(hf),
    )
