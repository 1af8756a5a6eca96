"""StarCoder2 recipe: LayerNorm with bias, a plain (non-gated) GELU MLP, biases throughout, GQA,
rotary positions and an optional sliding window on every layer.

config.json field -> spec field: as llama (scaffolder/families/llama.py), except
  norm_epsilon -> norm_eps (LayerNorm, weight and bias), use_bias -> attention_bias and mlp_bias
  (q/k/v/o, c_fc, c_proj), hidden_act -> one of the GELUs below, intermediate_size -> ffn_dim of
  c_fc / c_proj, sliding_window -> features (null: full causal attention).
The config's attention/residual/embedding dropouts are not applied (see the CLI warning).
"""

from __future__ import annotations

from typing import Any

from scaffolder.families.counted import CountedSpec, attention_params, mlp_params
from scaffolder.families.llama import check_raw, optional_token_id, read_dtype, read_rope
from scaffolder.families.mistral import read_sliding_window, sliding_window_features
from scaffolder.fields import read_bool, read_choice, read_float, read_int, require
from scaffolder.spec import normalize_with_transformers

MODEL_TYPES = ("starcoder2",)
HF_ARCHITECTURE = "Starcoder2ForCausalLM"
HF_CONFIG_CLASS = "Starcoder2Config"
FEATURES = (
    "GQA",
    "LayerNorm with bias",
    "plain GELU MLP (c_fc, c_proj)",
    "use_bias: biases on every linear layer",
    "sliding_window on every layer",
    "tied or untied embeddings",
    "rope default/linear/dynamic/llama3",
)
PARTS = {
    "rope": "rope",
    "attention": "attention",
    "feed_forward": "feed_forward_gelu",
    "block": "block_pre_norm",
    "transformer": "transformer",
    "overview": "overview_starcoder2",
    "args": "args_starcoder2",
}
# The GELUs the non-gated MLP part computes exactly as transformers' ACT2FN does.
GELU_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu", "gelu_new", "gelu_fast")
# Starcoder2Config.sliding_window when config.json has no such field.
SLIDING_WINDOW_DEFAULT = None
DROPOUT_FIELDS = ("attention_dropout", "residual_dropout", "embedding_dropout")


def build(config: dict[str, Any]) -> CountedSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("use_bias", "tie_word_embeddings"))
    if "norm_epsilon" in config:
        read_float(config, "norm_epsilon")
    hf = normalize_with_transformers(config, config["model_type"])
    n_heads = read_int(hf, "num_attention_heads")
    n_kv_heads = read_int(hf, "num_key_value_heads")
    require(
        n_heads % n_kv_heads == 0,
        "num_key_value_heads",
        f"{n_kv_heads} must divide num_attention_heads ({n_heads})",
    )
    dim = read_int(hf, "hidden_size")
    use_bias = read_bool(hf, "use_bias")
    fields = dict(
        model_type=hf["model_type"],
        vocab_size=read_int(hf, "vocab_size"),
        dim=dim,
        n_layers=read_int(hf, "num_hidden_layers"),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        # Starcoder2Config has no head_dim; transformers still honours one in config.json.
        head_dim=read_int(hf, "head_dim", dim // n_heads),
        ffn_dim=read_int(hf, "intermediate_size"),
        max_seq_len=read_int(hf, "max_position_embeddings"),
        norm_eps=read_float(hf, "norm_epsilon"),
        rope=read_rope(hf),
        tie_word_embeddings=read_bool(hf, "tie_word_embeddings"),
        attention_bias=use_bias,
        mlp_bias=use_bias,
        hidden_act=read_choice(hf, "hidden_act", GELU_ACTIVATIONS),
        initializer_range=read_float(hf, "initializer_range", 0.02),
        torch_dtype=read_dtype(config),
        bos_token_id=optional_token_id(hf, "bos_token_id"),
        eos_token_id=optional_token_id(hf, "eos_token_id"),
    )
    window = read_sliding_window(hf)
    features = {
        **sliding_window_features(window, SLIDING_WINDOW_DEFAULT),
        "norm": "layernorm",
        "norm_eps_field": "norm_epsilon",
        "bias_fields": ("use_bias",),
        "dropout": read_dropout(hf, DROPOUT_FIELDS),
    }
    return CountedSpec(
        family="starcoder2",
        hf_architecture=HF_ARCHITECTURE,
        hf_config_class=HF_CONFIG_CLASS,
        parts=dict(PARTS),
        features=features,
        warnings=dropout_warnings(features["dropout"]),
        **layernorm_block_counts(fields),
        **fields,
    )


def layernorm_block_counts(fields: dict[str, Any]) -> dict[str, int]:
    """CountedSpec's counts for pre-norm LayerNorm blocks with a plain MLP."""
    dim = fields["dim"]
    block = attention_params(
        dim,
        fields["n_heads"],
        fields["n_kv_heads"],
        fields["head_dim"],
        qkv_bias=fields["attention_bias"],
        out_bias=fields["attention_bias"],
    )
    block += mlp_params(dim, fields["ffn_dim"], gated=False, bias=fields["mlp_bias"])
    block += 2 * 2 * dim  # two LayerNorms, weight and bias
    embeddings = fields["vocab_size"] * dim * (1 if fields["tie_word_embeddings"] else 2)
    return {"block_params": block, "other_params": embeddings + 2 * dim}


def read_dropout(hf: dict[str, Any], names: tuple[str, ...]) -> dict[str, float]:
    """The config's non-zero dropout probabilities (each in [0, 1)), by field name."""
    dropout = {}
    for name in names:
        p = read_float(hf, name, 0.0, positive=False)
        require(0.0 <= p < 1.0, name, f"must be in [0, 1), got {p}")
        if p:
            dropout[name] = p
    return dropout


def dropout_warnings(dropout: dict[str, float]) -> tuple[str, ...]:
    """A warning naming the config's non-zero dropouts: the generated model trains without any."""
    if not dropout:
        return ()
    named = ", ".join(f"{name} {p}" for name, p in dropout.items())
    return (
        f"dropout is not applied ({named}): the model and its Megatron YAML train without "
        "dropout, as transformers' eval mode runs",
    )
