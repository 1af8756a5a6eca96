"""Family recipes: one small module per model family, keyed by config.json ``model_type``."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from scaffolder.errors import ConfigFieldError
from scaffolder.families import (
    gemma,
    gemma2,
    gemma3_text,
    gpt2,
    gpt_neox,
    granite,
    llama,
    mistral,
    olmo2,
    phi3,
    qwen2,
    qwen3,
    starcoder2,
)

# Each recipe module names the model_types it reads in MODEL_TYPES.
FAMILY_MODULES: tuple[ModuleType, ...] = (
    llama,
    mistral,
    qwen2,
    qwen3,
    phi3,
    olmo2,
    granite,
    gemma,
    gemma2,
    gemma3_text,
    starcoder2,
    gpt_neox,
    gpt2,
)
RECIPES: dict[str, ModuleType] = {
    model_type: recipe for recipe in FAMILY_MODULES for model_type in recipe.MODEL_TYPES
}


def recipe_for(model_type: str, config: dict[str, Any]) -> ModuleType:
    """The recipe module for ``model_type``; unknown types fail with the supported list."""
    if model_type in RECIPES:
        return RECIPES[model_type]
    supported = ", ".join(sorted(RECIPES))
    hint = (
        " (its auto_map points at custom code, which is never executed)"
        if "auto_map" in config
        else ""
    )
    raise ConfigFieldError(
        "model_type", f"unsupported model type {model_type!r}{hint}; supported: {supported}"
    )
