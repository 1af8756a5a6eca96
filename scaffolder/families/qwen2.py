"""Qwen2 family recipe: Llama's blocks with q/k/v biases and sliding windows on the top layers.

config.json field -> spec field: as llama (scaffolder/families/llama.py), except that
Qwen2Config has no attention_bias / mlp_bias: q_proj, k_proj and v_proj always have biases,
o_proj and the MLP never (features["qkv_bias"]). Sliding windows, as transformers 5 decides them:
  use_sliding_window (default false) turns sliding_window (default 4096) on; then layers
  max_window_layers (default 28) and up slide, the layers below attend fully. layer_types, when
  given, overrides that and must read full_attention ... sliding_attention ... (the only pattern
  max_window_layers can state) -> features["sliding_window"], features["max_window_layers"].
"""

from __future__ import annotations

from typing import Any

from scaffolder.families.llama import (
    check_raw,
    common_fields,
    dropout_features,
    merge_features,
    padding_features,
)
from scaffolder.families.mistral import debug_sliding_window, read_sliding_window
from scaffolder.fields import read_bool, read_int, require
from scaffolder.spec import ArchSpec, normalize_with_transformers

MODEL_TYPES = ("qwen2",)
HF_ARCHITECTURE = "Qwen2ForCausalLM"
HF_CONFIG_CLASS = "Qwen2Config"
# What `scaffold families` lists (docs/families.md has the full table).
FEATURES = (
    "GQA",
    "tied or untied embeddings",
    "q/k/v biases (no o_proj bias)",
    "sliding_window on layers >= max_window_layers (use_sliding_window)",
    "rope default/linear/dynamic/llama3",
)
# Qwen2Config's defaults (the same in Qwen3Config) for fields a config.json may leave out.
SLIDING_WINDOW_DEFAULT = 4096
MAX_WINDOW_LAYERS_DEFAULT = 28
LAYER_TYPES = ("full_attention", "sliding_attention")


def build(config: dict[str, Any]) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("tie_word_embeddings",))
    check_raw_sliding(config)
    hf = normalize_with_transformers(config, config["model_type"])
    return ArchSpec(
        family="qwen2",
        hf_architecture=HF_ARCHITECTURE,
        hf_config_class=HF_CONFIG_CLASS,
        attention_bias=False,
        mlp_bias=False,
        features=merge_features(
            {"bias_fields": (), "qkv_bias": True},
            sliding_features(hf),
            dropout_features(hf),
            padding_features(hf),
        ),
        **common_fields(config, hf),
    )


def check_raw_sliding(config: dict[str, Any]) -> None:
    """Types of the sliding-window fields as written, before transformers reads them."""
    if "use_sliding_window" in config:
        read_bool(config, "use_sliding_window")
    read_sliding_window(config)
    if "max_window_layers" in config:
        read_int(config, "max_window_layers", minimum=0)
    layer_types = config.get("layer_types")
    if layer_types is not None:
        require(
            isinstance(layer_types, list) and all(t in LAYER_TYPES for t in layer_types),
            "layer_types",
            f"must be a list of {' / '.join(LAYER_TYPES)}",
        )


def sliding_features(hf: dict[str, Any]) -> dict[str, Any]:
    """The sliding-window features of a Qwen2-style config, as transformers resolved it.

    transformers sets ``sliding_window`` to None unless ``use_sliding_window``, and derives
    ``layer_types`` from ``max_window_layers`` unless config.json lists them.
    """
    n_layers = read_int(hf, "num_hidden_layers")
    layer_types = list(hf.get("layer_types") or [])
    require(
        len(layer_types) == n_layers,
        "layer_types",
        f"lists {len(layer_types)} layers, num_hidden_layers is {n_layers}",
    )
    first_sliding = (
        layer_types.index("sliding_attention") if "sliding_attention" in layer_types else n_layers
    )
    n_sliding = n_layers - first_sliding
    expected = ["full_attention"] * first_sliding + ["sliding_attention"] * n_sliding
    require(
        layer_types == expected,
        "layer_types",
        "must list full_attention layers first and sliding_attention layers after them "
        "(the pattern max_window_layers describes); other patterns are not supported",
    )
    features: dict[str, Any] = {
        "sliding_window_layers": "from_max_window_layers",
        "sliding_window_default": SLIDING_WINDOW_DEFAULT,
        "max_window_layers_default": MAX_WINDOW_LAYERS_DEFAULT,
    }
    if first_sliding == n_layers:
        return {"sliding_window": None, **features}
    window = read_sliding_window(hf)
    require(
        window is not None,
        "layer_types",
        "lists sliding_attention layers but there is no window "
        "(use_sliding_window false or sliding_window null)",
    )
    # The debug flavor (4 layers) keeps both kinds of layers when the full model has both.
    debug_first = 0 if first_sliding == 0 else min(max(1, round(first_sliding * 4 / n_layers)), 3)
    return {
        "sliding_window": window,
        "max_window_layers": first_sliding,
        **features,
        "debug": {**debug_sliding_window(window), "max_window_layers": debug_first},
    }
