"""Mistral family recipe: Llama's blocks with sliding-window attention on every layer.

config.json field -> spec field: as llama (scaffolder/families/llama.py), except that
MistralConfig has no attention_bias / mlp_bias (no biases anywhere), plus
  sliding_window -> features["sliding_window"] (None: full causal attention; MistralConfig's
  default, 4096, when config.json leaves the field out).
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
from scaffolder.fields import read_int
from scaffolder.spec import ArchSpec, normalize_with_transformers

MODEL_TYPES = ("mistral",)
HF_ARCHITECTURE = "MistralForCausalLM"
HF_CONFIG_CLASS = "MistralConfig"
# What `scaffold families` lists (docs/families.md has the full table).
FEATURES = (
    "GQA",
    "explicit head_dim",
    "tied or untied embeddings",
    "sliding_window on every layer",
    "rope default/linear/dynamic/llama3",
)
# MistralConfig.sliding_window: what transformers uses when config.json has no such field.
SLIDING_WINDOW_DEFAULT = 4096
# The debug flavor's window: shorter than the generated tests' sequences, so they see it slide.
DEBUG_SLIDING_WINDOW = 16


def build(config: dict[str, Any]) -> ArchSpec:
    """Validate ``config`` (a config.json dict) and return its :class:`ArchSpec`."""
    check_raw(config, bool_fields=("tie_word_embeddings",))
    read_sliding_window(config)
    hf = normalize_with_transformers(config, config["model_type"])
    window = read_sliding_window(hf)
    return ArchSpec(
        family="mistral",
        hf_architecture=HF_ARCHITECTURE,
        hf_config_class=HF_CONFIG_CLASS,
        attention_bias=False,
        mlp_bias=False,
        features=merge_features(
            {"bias_fields": ()},
            sliding_window_features(window, SLIDING_WINDOW_DEFAULT),
            dropout_features(hf),
            padding_features(hf),
        ),
        **common_fields(config, hf),
    )


def read_sliding_window(config: dict[str, Any]) -> int | None:
    """``sliding_window``: a positive number of tokens, or None (null) for full attention."""
    if config.get("sliding_window") is None:
        return None
    return read_int(config, "sliding_window")


def sliding_window_features(window: int | None, default: int | None) -> dict[str, Any]:
    """Features of a family whose every layer slides when ``sliding_window`` is set.

    ``sliding_window_default`` is the window transformers assumes when config.json omits the
    field; the generated ``ModelArgs.from_hf`` needs it to read such a config the same way.
    """
    features: dict[str, Any] = {
        "sliding_window": window,
        "sliding_window_layers": "all",
        "sliding_window_default": default,
    }
    if window is not None:
        features["debug"] = debug_sliding_window(window)
    return features


def debug_sliding_window(window: int) -> dict[str, int]:
    """The debug flavor's ``sliding_window``: at most DEBUG_SLIDING_WINDOW tokens."""
    return {"sliding_window": min(window, DEBUG_SLIDING_WINDOW)}
