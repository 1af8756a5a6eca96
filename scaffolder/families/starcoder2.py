"""StarCoder2 recipe: LayerNorm with bias, a plain (non-gated) GELU MLP, biases throughout, GQA,
rotary positions and an optional sliding window on every layer.

config.json field -> spec field: as common_fields (scaffolder/families/common.py), except
  norm_epsilon -> norm_eps (LayerNorm, weight and bias), use_bias -> attention_bias and mlp_bias
  (q/k/v/o, c_fc, c_proj), hidden_act -> one of the GELUs below, intermediate_size -> ffn_dim of
  c_fc / c_proj, sliding_window -> features (null: full causal attention).
The config's attention/residual/embedding dropouts are not applied (see the CLI warning).
"""

from __future__ import annotations

from typing import Any

from scaffolder.config_fields import ConfigFields
from scaffolder.families.common import (
    GELU_ACTIVATIONS,
    CountedSpec,
    check_raw,
    common_fields,
    dropout_warnings,
    every_layer_sliding_window,
    layernorm_block_counts,
    read_dropout,
)
from scaffolder.features import Biases, CheckpointLayout, Features, Norm
from scaffolder.fields import read_bool, read_float
from scaffolder.recipe import Recipe
from scaffolder.spec import normalize_with_transformers

PARTS = {
    "rope": "rope",
    "attention": "attention",
    "feed_forward": "feed_forward_gelu",
    "block": "block_pre_norm",
    "transformer": "transformer",
}
# Starcoder2Config.sliding_window when config.json has no such field.
SLIDING_WINDOW_DEFAULT = None
# Starcoder2Config's defaults for the fields ModelArgs reads (None: the field's fallback; it has
# no head_dim, transformers' model uses hidden_size // num_attention_heads).
CONFIG_FIELDS = ConfigFields(
    defaults={
        "num_key_value_heads": 2,
        "head_dim": None,
        "max_position_embeddings": 4096,
        "norm_epsilon": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "gelu_pytorch_tanh",
        "tie_word_embeddings": True,
        "use_bias": True,
        "sliding_window": SLIDING_WINDOW_DEFAULT,
        "initializer_range": 0.018042,
    }
)
DROPOUT_FIELDS = ("attention_dropout", "residual_dropout", "embedding_dropout")


def build(config: dict[str, Any], recipe: Recipe) -> CountedSpec:
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
    features = Features(
        gated_mlp=False,
        norm=Norm(kind="layernorm", eps_field="norm_epsilon"),
        biases=Biases(fields=("use_bias",)),
        checkpoint=CheckpointLayout(up="c_fc", down="c_proj"),
        sliding_window=every_layer_sliding_window(hf),
        unapplied_dropout=tuple(read_dropout(hf, DROPOUT_FIELDS).items()),
    )
    return CountedSpec(
        **recipe.identity(),
        config_fields=CONFIG_FIELDS,
        parts=dict(PARTS),
        features=features,
        warnings=dropout_warnings(features.unapplied_dropout),
        **layernorm_block_counts(fields),
        **fields,
    )


RECIPES = (
    Recipe(
        name="starcoder2",
        model_types=("starcoder2",),
        hf_architecture="Starcoder2ForCausalLM",
        hf_config_class="Starcoder2Config",
        description="StarCoder2: LayerNorm with bias, plain GELU MLP, biases, sliding windows.",
        summary=(
            "GQA",
            "LayerNorm with bias",
            "plain GELU MLP (c_fc, c_proj)",
            "use_bias: biases on every linear layer",
            "sliding_window on every layer",
            "tied or untied embeddings",
            "rope default/linear/dynamic/llama3/yarn",
        ),
        build=build,
    ),
)
