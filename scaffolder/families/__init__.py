"""The family registry: every recipe under this package, keyed by config.json ``model_type``.

``build_spec`` is the one entry point from a config.json dict to a validated
:class:`~scaffolder.spec.ArchSpec`.
"""

from __future__ import annotations

from typing import Any

from scaffolder.errors import ConfigFieldError, ScaffoldError
from scaffolder.families import (
    deepseek_v2,
    deepseek_v3,
    gemma,
    gpt2,
    gpt_neox,
    gpt_oss,
    granite,
    granitemoe,
    llama,
    mistral,
    mixtral,
    olmo2,
    olmoe,
    phi3,
    qwen2,
    qwen2_moe,
    qwen3,
    qwen3_moe,
    starcoder2,
)
from scaffolder.recipe import Recipe
from scaffolder.spec import ArchSpec

ALL_RECIPES: tuple[Recipe, ...] = (
    *llama.RECIPES,
    *mistral.RECIPES,
    *qwen2.RECIPES,
    *qwen3.RECIPES,
    *phi3.RECIPES,
    *olmo2.RECIPES,
    *granite.RECIPES,
    *gemma.RECIPES,
    *starcoder2.RECIPES,
    *gpt_neox.RECIPES,
    *gpt2.RECIPES,
    *mixtral.RECIPES,
    *qwen2_moe.RECIPES,
    *qwen3_moe.RECIPES,
    *olmoe.RECIPES,
    *granitemoe.RECIPES,
    *deepseek_v2.RECIPES,
    *deepseek_v3.RECIPES,
    *gpt_oss.RECIPES,
)
RECIPES: dict[str, Recipe] = {
    model_type: recipe for recipe in ALL_RECIPES for model_type in recipe.model_types
}


def recipe_for(model_type: str, config: dict[str, Any]) -> Recipe:
    """The recipe for ``model_type``; unknown types fail with the supported list."""
    if model_type in RECIPES:
        return RECIPES[model_type]
    supported = ", ".join(sorted(RECIPES))
    known = _recipe_by_architecture(config)
    if known is not None:
        architecture, recipe = known
        # e.g. Kimi-K2: model_type kimi_k2, its own auto_map code, DeepseekV3ForCausalLM weights.
        raise ConfigFieldError(
            "model_type",
            f"{model_type!r} is not a model type scaffold knows, but architectures names "
            f"{architecture}, which the {recipe.name} family supports; to generate it as that "
            f'architecture, set "model_type": "{recipe.model_types[0]}" in a copy of config.json '
            "(custom code in auto_map is never run)",
        )
    hint = (
        " (its auto_map points at custom code, which is never executed)"
        if "auto_map" in config
        else ""
    )
    raise ConfigFieldError(
        "model_type", f"unsupported model type {model_type!r}{hint}; supported: {supported}"
    )


def _recipe_by_architecture(config: dict[str, Any]) -> tuple[str, Recipe] | None:
    """The first of config.json's ``architectures`` that a recipe generates, and that recipe."""
    architectures = config.get("architectures")
    if not isinstance(architectures, list):
        return None
    by_class = {recipe.hf_architecture: recipe for recipe in ALL_RECIPES}
    for name in architectures:
        if isinstance(name, str) and name in by_class:
            return name, by_class[name]
    return None


def build_spec(config: dict[str, Any]) -> ArchSpec:
    """Dispatch ``config`` (a config.json dict) to its family recipe; the validated spec."""
    if not isinstance(config, dict):
        raise ScaffoldError("config.json must hold a JSON object")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ConfigFieldError("model_type", "is missing; config.json must name its model_type")
    return recipe_for(model_type, config).spec(config)
