"""GPT-NeoX recipe (Pythia, GPT-NeoX-20B): LayerNorm, plain GELU MLP, partial rotary, parallel
residual, and a checkpoint that fuses q/k/v per head.

config.json field -> spec field:
  vocab_size, hidden_size -> dim, num_hidden_layers, num_attention_heads (multi-head: as many
  key/value heads; head_dim = hidden_size / heads), intermediate_size -> ffn_dim,
  max_position_embeddings, layer_norm_eps -> norm_eps, hidden_act (a GELU),
  rope_parameters (new) or rotary_emb_base / rotary_pct / rope_scaling (old) -> rope and
  features partial_rotary_factor, use_parallel_residual -> parts["block"],
  attention_bias (q/k/v/o; the MLP always has biases), tie_word_embeddings (default false).
The hidden/attention dropouts are not applied (see the CLI warning).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from scaffolder.config_fields import REQUIRED, ConfigFields
from scaffolder.families.common import (
    GELU_ACTIVATIONS,
    CountedSpec,
    check_raw_rope_type,
    check_rotary_dim,
    dropout_warnings,
    layernorm_block_counts,
    optional_token_id,
    read_dropout,
    read_dtype,
    read_rope,
)
from scaffolder.features import (
    Biases,
    CheckpointLayout,
    Features,
    FieldNames,
    Norm,
    PartialRotary,
)
from scaffolder.fields import read_bool, read_choice, read_float, read_int, require
from scaffolder.recipe import Recipe
from scaffolder.spec import RopeSpec, normalize_with_transformers

PARTS = {
    "rope": "rope",
    "attention": "attention",
    "feed_forward": "feed_forward_gelu",
    "block": "block_parallel_residual",
    "transformer": "transformer",
}
ROPE_TYPES = ("default", "linear")
# GPTNeoXConfig's names and defaults for the fields ModelArgs reads; the old-style rope fields
# are rotary_emb_base and rotary_pct (new style: rope_parameters).
CONFIG_FIELDS = ConfigFields(
    names={"rope_theta": "rotary_emb_base", "partial_rotary_factor": "rotary_pct"},
    defaults={
        "max_position_embeddings": 2048,
        "layer_norm_eps": 1e-5,
        "rotary_emb_base": 10000.0,
        "rotary_pct": 0.25,
        "hidden_act": "gelu",
        "tie_word_embeddings": False,
        "attention_bias": True,
        "use_parallel_residual": True,
        "initializer_range": 0.02,
    },
)
DROPOUT_FIELDS = ("attention_dropout", "hidden_dropout")
# GPTNeoXForCausalLM's checkpoint keys: q/k/v fused head after head in query_key_value, the
# output projection embed_out (every Pythia checkpoint and what save_pretrained writes; only
# transformers 5's in-memory model calls it lm_head, which from_hf reads too); older checkpoints
# carry attention buffers.
CHECKPOINT = CheckpointLayout(
    prefix="gpt_neox",
    embedding="embed_in",
    final_norm="final_layer_norm",
    attention="attention",
    o_proj="dense",
    up="dense_h_to_4h",
    down="dense_4h_to_h",
    fused_qkv="query_key_value",
    qkv_per_head=True,
    lm_head="embed_out",
    buffers=("attention.bias", "attention.masked_bias", "attention.rotary_emb.inv_freq"),
    legacy_names=(("lm_head.weight", "embed_out.weight"),),
)


def build(config: dict[str, Any], recipe: Recipe) -> CountedSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config)
    hf = normalize_with_transformers(config, config["model_type"])
    dim = read_int(hf, "hidden_size")
    n_heads = read_int(hf, "num_attention_heads")
    require(
        dim % n_heads == 0,
        "hidden_size",
        f"{dim} is not divisible by num_attention_heads ({n_heads})",
    )
    rope, partial = read_neox_rope(hf, dim // n_heads)
    attention_bias = read_bool(hf, "attention_bias")
    fields = dict(
        model_type=hf["model_type"],
        vocab_size=read_int(hf, "vocab_size"),
        dim=dim,
        n_layers=read_int(hf, "num_hidden_layers"),
        n_heads=n_heads,
        n_kv_heads=n_heads,
        head_dim=dim // n_heads,
        ffn_dim=read_int(hf, "intermediate_size"),
        max_seq_len=read_int(hf, "max_position_embeddings"),
        norm_eps=read_float(hf, "layer_norm_eps"),
        rope=rope,
        tie_word_embeddings=read_bool(hf, "tie_word_embeddings"),
        attention_bias=attention_bias,
        mlp_bias=True,
        hidden_act=read_choice(hf, "hidden_act", GELU_ACTIVATIONS),
        initializer_range=read_float(hf, "initializer_range", 0.02),
        torch_dtype=read_dtype(config),
        bos_token_id=optional_token_id(hf, "bos_token_id"),
        eos_token_id=optional_token_id(hf, "eos_token_id"),
    )
    parallel = read_bool(hf, "use_parallel_residual")
    dropout = read_dropout(hf, DROPOUT_FIELDS)
    features = Features(
        gated_mlp=False,
        norm=Norm(kind="layernorm", eps_field="layer_norm_eps"),
        biases=Biases(fields=("attention_bias",), mlp_always=True),
        names=FieldNames(derived_head_dims=True),
        partial_rotary=PartialRotary(partial) if partial != 1.0 else None,
        parallel_residual=parallel,
        partial_rotary_field=True,
        checkpoint=CHECKPOINT,
        unapplied_dropout=tuple(dropout.items()),
    )
    return CountedSpec(
        **recipe.identity(),
        config_fields=replace(CONFIG_FIELDS, switches={"use_parallel_residual": parallel}),
        parts={**PARTS, "block": "block_parallel_residual" if parallel else "block_pre_norm"},
        features=features,
        warnings=dropout_warnings(features.unapplied_dropout),
        **layernorm_block_counts(fields),
        **fields,
    )


def check_raw(config: dict[str, Any]) -> None:
    """Type checks on the fields as written, before transformers sees them."""
    for name in REQUIRED:
        read_int(config, name)
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    require(
        hidden % heads == 0,
        "hidden_size",
        f"{hidden} is not divisible by num_attention_heads ({heads})",
    )
    if config.get("max_position_embeddings") is not None:
        read_int(config, "max_position_embeddings")
    for name in ("attention_bias", "use_parallel_residual", "tie_word_embeddings"):
        if name in config:
            read_bool(config, name)
    for name in ("layer_norm_eps", "rotary_emb_base"):
        if config.get(name) is not None:
            read_float(config, name)
    if config.get("rotary_pct") is not None:
        head_dim = config["hidden_size"] // config["num_attention_heads"]
        check_rotary_dim(read_float(config, "rotary_pct"), head_dim, field="rotary_pct")
    check_raw_rope_type(config, ROPE_TYPES)


def read_neox_rope(hf: dict[str, Any], head_dim: int) -> tuple[RopeSpec, float]:
    """The RoPE of a GPTNeoXConfig (rope_parameters) and its partial_rotary_factor."""
    params = hf.get("rope_parameters") or {}
    partial = read_float(params, "partial_rotary_factor", 1.0)
    check_rotary_dim(partial, head_dim)
    return read_rope(hf, ROPE_TYPES), partial


RECIPES = (
    Recipe(
        name="gpt_neox",
        model_types=("gpt_neox",),
        hf_architecture="GPTNeoXForCausalLM",
        hf_config_class="GPTNeoXConfig",
        description="GPT-NeoX (Pythia): LayerNorm, GELU MLP, partial rotary, parallel residual.",
        summary=(
            "multi-head attention",
            "LayerNorm with bias",
            "plain GELU MLP (dense_h_to_4h, dense_4h_to_h) with biases",
            "attention_bias",
            "partial rotary (rotary_pct / partial_rotary_factor)",
            "parallel residual or sequential (use_parallel_residual)",
            "fused per-head query_key_value in the checkpoint",
            "tied or untied embeddings",
            "rope default/linear",
        ),
        build=build,
    ),
)
