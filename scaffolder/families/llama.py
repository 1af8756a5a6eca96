"""Llama family recipe: RMSNorm, SwiGLU MLP, rotary attention with optional GQA.

config.json field -> spec field:
  vocab_size -> vocab_size, hidden_size -> dim, num_hidden_layers -> n_layers,
  num_attention_heads -> n_heads, num_key_value_heads -> n_kv_heads, head_dim -> head_dim,
  intermediate_size -> ffn_dim, max_position_embeddings -> max_seq_len, rms_norm_eps -> norm_eps,
  rope_theta / rope_scaling (old) or rope_parameters (new) -> rope,
  tie_word_embeddings, attention_bias, mlp_bias, hidden_act, initializer_range, torch_dtype.
"""

from __future__ import annotations

from typing import Any

from scaffolder.fields import read_bool, read_choice, read_float, read_int, require
from scaffolder.spec import (
    DEBUG_VOCAB_SIZE,
    DTYPES,
    ROPE_TYPES,
    ArchSpec,
    RopeSpec,
    normalize_with_transformers,
)

MODEL_TYPES = ("llama",)
HF_ARCHITECTURE = "LlamaForCausalLM"
HF_CONFIG_CLASS = "LlamaConfig"
# What `scaffold families` lists (docs/families.md has the full table).
FEATURES = (
    "GQA",
    "explicit head_dim",
    "tied or untied embeddings",
    "attention_bias",
    "mlp_bias",
    "rope default/linear/dynamic/llama3",
)

# Dimensions a config.json must state: transformers' defaults for them (a 7B model) would
# silently describe a different model.
REQUIRED_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
)
_INT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "max_position_embeddings",
)


def build(config: dict[str, Any]) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config)
    hf = normalize_with_transformers(config, config["model_type"])
    return ArchSpec(
        family="llama",
        hf_architecture=HF_ARCHITECTURE,
        hf_config_class=HF_CONFIG_CLASS,
        attention_bias=read_bool(hf, "attention_bias", False),
        mlp_bias=read_bool(hf, "mlp_bias", False),
        features=merge_features(dropout_features(hf), padding_features(hf)),
        **common_fields(config, hf),
    )


def common_fields(
    config: dict[str, Any],
    hf: dict[str, Any],
    rope: RopeSpec | None = None,
    *,
    activation_field: str = "hidden_act",
    activations: tuple[str, ...] = ("silu",),
    norm_eps_field: str = "rms_norm_eps",
) -> dict[str, Any]:
    """The ArchSpec fields every Llama-like family reads the same way.

    ``config`` is the config.json as written, ``hf`` the same after transformers' config class
    (:func:`normalize_with_transformers`). Everything but family, architecture names and biases;
    ``rope`` is the family's own reading of its rope fields (default: :func:`read_rope`).
    ``activation_field`` and ``norm_eps_field`` name the family's fields for ``hidden_act`` (one
    of ``activations``) and ``norm_eps``.
    """
    n_heads = read_int(hf, "num_attention_heads")
    n_kv_heads = read_int(hf, "num_key_value_heads")
    require(
        n_heads % n_kv_heads == 0,
        "num_key_value_heads",
        f"{n_kv_heads} must divide num_attention_heads ({n_heads})",
    )
    dim = read_int(hf, "hidden_size")
    return dict(
        model_type=hf["model_type"],
        vocab_size=read_int(hf, "vocab_size"),
        dim=dim,
        n_layers=read_int(hf, "num_hidden_layers"),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=read_int(hf, "head_dim", dim // n_heads),
        ffn_dim=read_int(hf, "intermediate_size"),
        max_seq_len=read_int(hf, "max_position_embeddings"),
        norm_eps=read_float(hf, norm_eps_field),
        rope=read_rope(hf) if rope is None else rope,
        tie_word_embeddings=read_bool(hf, "tie_word_embeddings", False),
        hidden_act=read_choice(hf, activation_field, activations),
        initializer_range=read_float(hf, "initializer_range", 0.02),
        torch_dtype=read_dtype(config),
        bos_token_id=optional_token_id(hf, "bos_token_id"),
        eos_token_id=optional_token_id(hf, "eos_token_id"),
    )


def check_raw(
    config: dict[str, Any],
    rope_types: tuple[str, ...] = ROPE_TYPES,
    bool_fields: tuple[str, ...] = ("attention_bias", "mlp_bias", "tie_word_embeddings"),
) -> None:
    """Type and consistency checks on the fields as written, before transformers sees them.

    ``rope_types`` and ``bool_fields`` are what the family's config class knows.
    """
    for name in REQUIRED_FIELDS:
        read_int(config, name)
    for name in _INT_FIELDS:
        if config.get(name) is not None:
            read_int(config, name)
    for name in bool_fields:
        if name in config:
            read_bool(config, name)
    if "rms_norm_eps" in config:
        read_float(config, "rms_norm_eps")
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    if hidden and heads and config.get("head_dim") is None:
        require(
            hidden % heads == 0,
            "hidden_size",
            f"{hidden} is not divisible by num_attention_heads ({heads}); "
            "set head_dim explicitly or fix the sizes",
        )
    kv_heads = config.get("num_key_value_heads")
    if heads and kv_heads:
        require(
            heads % kv_heads == 0,
            "num_key_value_heads",
            f"{kv_heads} must divide num_attention_heads ({heads})",
        )
    check_raw_rope_type(config, rope_types)


def check_raw_rope_type(config: dict[str, Any], rope_types: tuple[str, ...]) -> None:
    """``rope_scaling`` / ``rope_parameters`` as written: an object (or null) of a known type."""
    for name in ("rope_scaling", "rope_parameters"):
        block = config.get(name)
        if block is None:
            continue
        require(isinstance(block, dict), name, "must be an object or null")
        key = "rope_type" if "rope_type" in block else "type"
        rope_type = block.get(key, "default")
        require(
            rope_type in rope_types,
            f"{name}.{key}",
            f"unsupported rope type {rope_type!r}; supported: {', '.join(rope_types)}",
        )


def read_rope(hf: dict[str, Any], rope_types: tuple[str, ...] = ROPE_TYPES) -> RopeSpec:
    """The RoPE of transformers' ``rope_parameters``, one of ``rope_types`` (of ROPE_TYPES)."""
    params = hf.get("rope_parameters") or {}
    rope_type = params.get("rope_type", "default")
    require(
        rope_type in rope_types,
        "rope_parameters.rope_type",
        f"unsupported rope type {rope_type!r}; supported: {', '.join(rope_types)}",
    )
    theta = read_float(params, "rope_theta", 10000.0)
    if rope_type == "default":
        return RopeSpec(type="default", theta=theta)
    factor = read_float(params, "factor")
    if rope_type in ("linear", "dynamic"):
        require(factor >= 1.0, "rope_scaling.factor", f"must be >= 1.0, got {factor}")
        return RopeSpec(type=rope_type, theta=theta, factor=factor)
    low = read_float(params, "low_freq_factor")
    high = read_float(params, "high_freq_factor")
    require(
        high > low,
        "rope_scaling.high_freq_factor",
        f"must be greater than low_freq_factor ({low}), got {high}",
    )
    return RopeSpec(
        type="llama3",
        theta=theta,
        factor=factor,
        low_freq_factor=low,
        high_freq_factor=high,
        original_max_position_embeddings=read_int(params, "original_max_position_embeddings"),
    )


def dropout_features(hf: dict[str, Any]) -> dict[str, Any]:
    """``attention_dropout``, when the config trains with it: transformers drops attention
    probabilities in training mode (the packages do the same; evaluation never drops).

    The debug flavor drops nothing, so that its training-mode comparisons (gradients against
    transformers, parallel against single-device) are exact.
    """
    dropout = read_dropout(hf, ("attention_dropout",))
    if not dropout:
        return {}
    return {**dropout, "debug": {"attention_dropout": 0.0}}


def read_dropout(hf: dict[str, Any], names: tuple[str, ...]) -> dict[str, float]:
    """The config's non-zero dropout probabilities (each in [0, 1)), by field name."""
    dropout = {}
    for name in names:
        p = read_float(hf, name, 0.0, positive=False)
        require(0.0 <= p < 1.0, name, f"must be in [0, 1), got {p}")
        if p:
            dropout[name] = p
    return dropout


def padding_features(hf: dict[str, Any]) -> dict[str, Any]:
    """``pad_token_id`` as the embedding's ``padding_idx``, as transformers builds the embedding.

    That row gets no gradient (and starts at zero). The debug flavor's vocabulary is smaller:
    a pad id beyond it becomes row 0 there.
    """
    if hf.get("pad_token_id") is None:
        return {}
    pad = read_int(hf, "pad_token_id", minimum=0)
    vocab_size = read_int(hf, "vocab_size")
    require(pad < vocab_size, "pad_token_id", f"{pad} is not below vocab_size ({vocab_size})")
    features: dict[str, Any] = {"embedding_padding_idx": True, "pad_token_id": pad}
    if pad >= DEBUG_VOCAB_SIZE:
        features["debug"] = {"pad_token_id": 0}
    return features


def merge_features(*parts: dict[str, Any]) -> dict[str, Any]:
    """One features dict from several readers' dicts; their ``debug`` values merge too."""
    features: dict[str, Any] = {}
    debug: dict[str, Any] = {}
    for part in parts:
        features.update({key: value for key, value in part.items() if key != "debug"})
        debug.update(part.get("debug", {}))
    if debug:
        features["debug"] = debug
    return features


def read_dtype(config: dict[str, Any]) -> str:
    value = config.get("torch_dtype", config.get("dtype")) or "float32"
    field = "torch_dtype" if "torch_dtype" in config else "dtype"
    return read_choice({field: value}, field, DTYPES)


def optional_token_id(hf: dict[str, Any], field: str) -> int | None:
    value = hf.get(field)
    if value is None or isinstance(value, list):
        return None
    return read_int(hf, field, minimum=0)
