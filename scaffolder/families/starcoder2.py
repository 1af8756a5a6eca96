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
from scaffolder.families.llama import check_raw, common_fields, read_dropout
from scaffolder.families.mistral import read_sliding_window, sliding_window_features
from scaffolder.fields import read_bool, read_float
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
    use_bias = read_bool(hf, "use_bias")
    # head_dim: Starcoder2Config has none; transformers still honours one in config.json.
    fields = dict(
        **common_fields(config, hf, activations=GELU_ACTIVATIONS, norm_eps_field="norm_epsilon"),
        attention_bias=use_bias,
        mlp_bias=use_bias,
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


def dropout_warnings(dropout: dict[str, float]) -> tuple[str, ...]:
    """A warning naming the config's non-zero dropouts: the generated model trains without any."""
    if not dropout:
        return ()
    named = ", ".join(f"{name} {p}" for name, p in dropout.items())
    return (
        f"dropout is not applied ({named}): the model and its Megatron YAML train without "
        "dropout, as transformers' eval mode runs",
    )
