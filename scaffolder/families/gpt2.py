"""GPT-2 recipe: learned absolute positions, LayerNorm, a plain GELU MLP, biases everywhere, and a
checkpoint of transposed (Conv1D) weights with q/k/v fused in c_attn.

config.json field -> spec field:
  vocab_size, n_embd -> dim, n_layer -> n_layers, n_head -> n_heads (multi-head; head_dim =
  n_embd / n_head), n_inner (null: 4 * n_embd) -> ffn_dim, n_positions -> max_seq_len (rows of
  the position table wpe), layer_norm_epsilon -> norm_eps, activation_function (a GELU),
  scale_attn_weights (false: scores unscaled), tie_word_embeddings (default true).
resid_pdrop / embd_pdrop / attn_pdrop are not applied (see the CLI warning).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from scaffolder.config_fields import ConfigFields
from scaffolder.errors import ConfigFieldError
from scaffolder.families.common import (
    GELU_ACTIVATIONS,
    CountedSpec,
    dropout_warnings,
    layernorm_block_counts,
    optional_token_id,
    read_dropout,
    read_dtype,
)
from scaffolder.features import Biases, CheckpointLayout, Features, FieldNames, Norm
from scaffolder.fields import read_bool, read_choice, read_float, read_int, require
from scaffolder.recipe import Recipe
from scaffolder.spec import normalize_with_transformers

PARTS = {
    "attention": "attention",
    "feed_forward": "feed_forward_gelu",
    "block": "block_pre_norm",
    "transformer": "transformer_learned_positions",
}
DROPOUT_FIELDS = ("resid_pdrop", "embd_pdrop", "attn_pdrop")
# GPT2Config's names and defaults for the fields ModelArgs reads; its dropouts default to 0.1,
# so to_hf states them as 0 (the model trains without dropout).
CONFIG_FIELDS = ConfigFields(
    names={
        "dim": "n_embd",
        "n_layers": "n_layer",
        "n_heads": "n_head",
        "ffn_dim": "n_inner",
        "max_seq_len": "n_positions",
    },
    required=("vocab_size", "n_embd", "n_layer", "n_head"),
    defaults={
        "n_inner": None,
        "n_positions": 1024,
        "layer_norm_epsilon": 1e-5,
        "activation_function": "gelu_new",
        "tie_word_embeddings": True,
        "scale_attn_weights": True,
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attn_pdrop": 0.1,
        "initializer_range": 0.02,
    },
    zeroed=DROPOUT_FIELDS,
)
# GPT2LMHeadModel's keys: Conv1D (transposed) linear layers, q/k/v stacked in c_attn; the hub's
# checkpoints leave out the "transformer." prefix and carry the attention mask buffers.
CHECKPOINT = CheckpointLayout(
    prefix="transformer",
    embedding="wte",
    positions="wpe",
    blocks="h",
    final_norm="ln_f",
    attention="attn",
    o_proj="c_proj",
    input_norm="ln_1",
    post_attention_norm="ln_2",
    up="c_fc",
    down="c_proj",
    fused_qkv="c_attn",
    conv1d=("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
    buffers=("attn.bias", "attn.masked_bias"),
    hub_unprefixed=True,
)
# GPT2Config switches this package does not implement: (field, value that is supported).
UNSUPPORTED_SWITCHES = (
    ("scale_attn_by_inverse_layer_idx", False, "scores divided by the layer number"),
    ("reorder_and_upcast_attn", False, "float32 attention scores under mixed precision"),
    ("add_cross_attention", False, "cross-attention to an encoder"),
)


def build(config: dict[str, Any], recipe: Recipe) -> CountedSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config)
    hf = normalize_with_transformers(config, config["model_type"])
    dim = read_int(hf, "n_embd")
    n_heads = read_int(hf, "n_head")
    n_inner = hf.get("n_inner")
    fields = dict(
        model_type=hf["model_type"],
        vocab_size=read_int(hf, "vocab_size"),
        dim=dim,
        n_layers=read_int(hf, "n_layer"),
        n_heads=n_heads,
        n_kv_heads=n_heads,
        head_dim=dim // n_heads,
        ffn_dim=4 * dim if n_inner is None else read_int(hf, "n_inner"),
        max_seq_len=read_int(hf, "n_positions"),
        norm_eps=read_float(hf, "layer_norm_epsilon"),
        rope=None,
        tie_word_embeddings=read_bool(hf, "tie_word_embeddings"),
        attention_bias=True,
        mlp_bias=True,
        hidden_act=read_choice(hf, "activation_function", GELU_ACTIVATIONS),
        initializer_range=read_float(hf, "initializer_range", 0.02),
        torch_dtype=read_dtype(config),
        bos_token_id=optional_token_id(hf, "bos_token_id"),
        eos_token_id=optional_token_id(hf, "eos_token_id"),
    )
    dropout = read_dropout(hf, DROPOUT_FIELDS)
    features = Features(
        gated_mlp=False,
        norm=Norm(kind="layernorm", eps_field="layer_norm_epsilon"),
        biases=Biases(fields=(), everywhere=True),
        names=FieldNames(
            activation="activation_function",
            derived_head_dims=True,
        ),
        learned_positions=True,
        scale_attn_weights=read_bool(hf, "scale_attn_weights"),
        checkpoint=CHECKPOINT,
        unapplied_dropout=tuple(dropout.items()),
    )
    counts = layernorm_block_counts(fields)
    counts["other_params"] += fields["max_seq_len"] * dim  # the position table (wpe)
    return CountedSpec(
        **recipe.identity(),
        config_fields=replace(
            CONFIG_FIELDS, switches={"scale_attn_weights": features.scale_attn_weights}
        ),
        parts=dict(PARTS),
        features=features,
        warnings=dropout_warnings(features.unapplied_dropout),
        **counts,
        **fields,
    )


def check_raw(config: dict[str, Any]) -> None:
    """Type checks on the fields as written, before transformers sees them."""
    for name in CONFIG_FIELDS.required:
        read_int(config, name)
    for name in ("n_positions", "n_inner"):
        if config.get(name) is not None:
            read_int(config, name)
    embd, heads = config["n_embd"], config["n_head"]
    require(embd % heads == 0, "n_embd", f"{embd} is not divisible by n_head ({heads})")
    for name in ("scale_attn_weights", "tie_word_embeddings"):
        if name in config:
            read_bool(config, name)
    if config.get("layer_norm_epsilon") is not None:
        read_float(config, "layer_norm_epsilon")
    for name, supported, what in UNSUPPORTED_SWITCHES:
        if name in config and config[name] != supported:
            raise ConfigFieldError(
                name,
                f"unsupported value {config[name]!r} ({what}); supported: {supported!r}",
            )


RECIPES = (
    Recipe(
        name="gpt2",
        model_types=("gpt2",),
        hf_architecture="GPT2LMHeadModel",
        hf_config_class="GPT2Config",
        description="GPT-2: learned positions, LayerNorm, GELU MLP, Conv1D checkpoint.",
        summary=(
            "multi-head attention",
            "learned absolute positions (wpe)",
            "LayerNorm with bias",
            "plain GELU MLP (c_fc, c_proj), biases everywhere",
            "Conv1D (transposed) checkpoint weights, fused c_attn",
            "scale_attn_weights",
            "tied or untied embeddings",
        ),
        build=build,
    ),
)
