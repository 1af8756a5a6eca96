"""Phi-3 family recipe: Llama's blocks, fused qkv/gate_up checkpoints, LongRoPE, partial RoPE.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), except that
Phi3Config has no attention_bias / mlp_bias (no biases), plus
  rope_scaling / rope_parameters: rope_type "default" or "longrope" ("su" and "yarn" are
    transformers' old names for longrope): short_factor, long_factor -> features
    ["rope_short_factor"], ["rope_long_factor"]; attention_factor (default
    sqrt(1 + ln(factor) / ln(original_max_position_embeddings)), factor defaulting to
    max_position_embeddings / original_max_position_embeddings) -> ["rope_attention_factor"];
  original_max_position_embeddings (top level; Phi3Config's wins over rope_scaling's, default
    4096) -> rope.original_max_position_embeddings,
  partial_rotary_factor -> PartialRotary(factor) (RoPE on the first
    int(head_dim * factor) channels of each head),
  sliding_window (null: none) -> SlidingWindow(window), every layer,
  pad_token_id (Phi3Config's default 32000) -> the embedding's padding_idx,
  resid_pdrop: must be 0 (residual dropout is not implemented; embd_pdrop is unused upstream).
The checkpoint stores q/k/v as one ``qkv_proj`` and gate/up as one ``gate_up_proj``
(features.checkpoint): the model keeps separate projections (simple TP plans) and the
state dict adapter splits and fuses them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from scaffolder.config_fields import ConfigFields
from scaffolder.families.common import (
    check_raw,
    check_rotary_dim,
    common_fields,
    every_layer_sliding_window,
    read_attention_dropout,
    read_padding,
    read_sliding_window,
)
from scaffolder.features import Biases, CheckpointLayout, Features, LongRope, PartialRotary
from scaffolder.fields import read_float, read_int, require
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec, RopeSpec, normalize_with_transformers

# Rope types Phi3Config accepts; it renames "su" and "yarn" to "longrope".
LONGROPE_ALIASES = ("su", "yarn")
ROPE_TYPES = ("default", "longrope", *LONGROPE_ALIASES)
# Phi3Config's defaults for fields a config.json may leave out.
ORIGINAL_MAX_POSITION_EMBEDDINGS_DEFAULT = 4096
PAD_TOKEN_ID_DEFAULT = 32000
# Phi3Config's defaults for the fields ModelArgs reads (None: the field's fallback; it has no
# head_dim, transformers' model uses hidden_size // num_attention_heads).
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": None,
        "head_dim": None,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "partial_rotary_factor": 1.0,
        "original_max_position_embeddings": ORIGINAL_MAX_POSITION_EMBEDDINGS_DEFAULT,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "sliding_window": None,
        "pad_token_id": PAD_TOKEN_ID_DEFAULT,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
    }
)
# The debug flavor's pretraining length: shorter than the generated tests' 64-token sequences, so
# they run both the short and the long factors.
DEBUG_ORIGINAL_MAX_POSITION_EMBEDDINGS = 32


def build(config: dict[str, Any], recipe: Recipe) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, rope_types=ROPE_TYPES, bool_fields=("tie_word_embeddings",))
    read_sliding_window(config)
    if "partial_rotary_factor" in config:
        # Checked before transformers, whose complaint would be about the factor lists.
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        check_rotary_dim(read_float(config, "partial_rotary_factor"), head_dim)
    hf = normalize_with_transformers(config, config["model_type"])
    resid_pdrop = read_float(hf, "resid_pdrop", 0.0, positive=False)
    require(
        resid_pdrop == 0.0,
        "resid_pdrop",
        f"residual dropout ({resid_pdrop}) is not supported; Phi-3 checkpoints train with 0.0",
    )
    dim, n_heads = read_int(hf, "hidden_size"), read_int(hf, "num_attention_heads")
    head_dim = read_int(hf, "head_dim", dim // n_heads)
    rope, partial, longrope = read_phi3_rope(hf, head_dim, read_int(hf, "max_position_embeddings"))
    features = Features(
        biases=Biases(fields=()),
        checkpoint=CheckpointLayout(fused_qkv="qkv_proj", fused_gate_up="gate_up_proj"),
        partial_rotary_field=True,
        longrope_aliases=LONGROPE_ALIASES,
        partial_rotary=partial,
        longrope=longrope,
        sliding_window=every_layer_sliding_window(hf),
        attention_dropout=read_attention_dropout(hf),
        padding=read_padding(hf),
    )
    spec = ArchSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        attention_bias=False,
        mlp_bias=False,
        features=features,
        **common_fields(config, hf, rope=rope),
    )
    return replace(spec, debug_extra=debug_rope(spec))


def read_phi3_rope(
    hf: dict[str, Any], head_dim: int, max_seq_len: int
) -> tuple[RopeSpec, PartialRotary | None, LongRope | None]:
    """The rope of a Phi3Config: default or LongRoPE, optionally on part of each head."""
    params = hf.get("rope_parameters") or {}
    theta = read_float(params, "rope_theta", 10000.0)
    partial = read_float(params, "partial_rotary_factor", 1.0)
    rotary_dim = check_rotary_dim(partial, head_dim)
    partial_rotary = PartialRotary(partial) if partial != 1.0 else None
    rope_type = params.get("rope_type", "default")
    if rope_type == "default":
        return RopeSpec(type="default", theta=theta), partial_rotary, None
    require(
        rope_type == "longrope",
        "rope_scaling.rope_type",
        f"unsupported rope type {rope_type!r}; supported: default, longrope",
    )
    original = read_int(params, "original_max_position_embeddings")
    short = read_factors(params, "short_factor", rotary_dim // 2)
    long = read_factors(params, "long_factor", rotary_dim // 2)
    factor = params.get("factor")
    factor = max_seq_len / original if factor is None else read_float(params, "factor")
    attention = params.get("attention_factor")
    if attention is None:
        # transformers' default for LongRoPE.
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    else:
        attention = read_float(params, "attention_factor")
    longrope = LongRope(
        short_factor=short,
        long_factor=long,
        attention_factor=attention,
    )
    rope = RopeSpec(
        type="longrope", theta=theta, factor=factor, original_max_position_embeddings=original
    )
    return rope, partial_rotary, longrope


def read_factors(params: dict[str, Any], name: str, length: int) -> tuple[float, ...]:
    """``rope_scaling.<name>``: ``length`` positive numbers, one per rotated frequency."""
    values = params.get(name)
    field = f"rope_scaling.{name}"
    require(
        isinstance(values, list)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values),
        field,
        "must be a list of numbers",
    )
    require(
        len(values) == length,
        field,
        f"has {len(values)} values; the rotated channels need {length} (rotary dims / 2)",
    )
    try:
        factors = tuple(float(v) for v in values)
    except OverflowError:  # an integer beyond float's range
        factors = (math.inf,)
    require(
        all(math.isfinite(v) and v > 0 for v in factors), field, "values must be finite and > 0"
    )
    return factors


def debug_rope(spec: ArchSpec) -> dict[str, Any]:
    """The debug flavor's rope: an even number of rotated channels and, for LongRoPE, a short
    pretraining length and factors for its head_dim.

    The factor lists are resampled to the debug flavor's rotated channels (evenly spaced picks
    of the real factors, keeping their low-to-high shape).
    """
    dims = spec.debug_dims()
    partial_rotary = spec.features.partial_rotary
    partial = 1.0 if partial_rotary is None else partial_rotary.factor
    head_dim = dims["head_dim"]
    # RoPE needs an even number of rotated channels (and Phi3Config counts them from
    # hidden_size / num_attention_heads, so dim follows head_dim).
    while int(head_dim * partial) % 2:
        head_dim += 1
    debug: dict[str, Any] = {}
    if head_dim != dims["head_dim"]:
        debug.update(head_dim=head_dim, dim=dims["n_heads"] * head_dim)
    if spec.rope.type != "longrope":
        return debug
    n = int(head_dim * partial) // 2

    def resample(factors: tuple[float, ...]) -> tuple[float, ...]:
        if n == 1:
            return factors[:1]
        return tuple(factors[round(i * (len(factors) - 1) / (n - 1))] for i in range(n))

    return {
        **debug,
        "rope_original_max_seq_len": min(
            spec.rope.original_max_position_embeddings, DEBUG_ORIGINAL_MAX_POSITION_EMBEDDINGS
        ),
        "rope_short_factor": resample(spec.features.longrope.short_factor),
        "rope_long_factor": resample(spec.features.longrope.long_factor),
    }


RECIPES = (
    Recipe(
        name="phi3",
        model_types=("phi3",),
        hf_architecture="Phi3ForCausalLM",
        hf_config_class="Phi3Config",
        description="Phi-3: Llama's blocks, fused qkv/gate_up checkpoints, LongRoPE, partial RoPE.",
        summary=(
            "GQA",
            "tied or untied embeddings",
            "fused qkv_proj / gate_up_proj in the checkpoint (split and fused by the adapter)",
            "rope default/longrope (short/long factors)",
            "partial_rotary_factor",
            "sliding_window on every layer",
            "pad_token_id padding_idx",
        ),
        build=build,
    ),
)
