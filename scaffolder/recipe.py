"""The typed registry entry of a model family: what ``scaffold`` needs to know of a recipe.

Each module under ``scaffolder/families/`` states its family's facts (the config.json fields it
reads, its features, what Megatron cannot express) and exports ``RECIPES``, a tuple of
:class:`Recipe`; ``scaffolder.families`` collects them by ``model_type``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scaffolder.spec import ArchSpec


@dataclass(frozen=True)
class Recipe:
    """One model family, keyed by the config.json ``model_type`` values it reads."""

    name: str
    model_types: tuple[str, ...]
    hf_architecture: str  # transformers' causal-LM class, e.g. "LlamaForCausalLM"
    hf_config_class: str  # transformers' config class, e.g. "LlamaConfig"
    description: str  # one line for `scaffold families`
    summary: tuple[str, ...]  # what `scaffold families` lists (docs/families.md has the table)
    # (config.json dict, this recipe) -> validated spec; the spec's identity is the recipe's.
    build: Callable[[dict[str, Any], Recipe], ArchSpec]

    def identity(self) -> dict[str, str]:
        """The spec fields that name the family: ``family``, ``hf_architecture``,
        ``hf_config_class``."""
        return {
            "family": self.name,
            "hf_architecture": self.hf_architecture,
            "hf_config_class": self.hf_config_class,
        }

    def spec(self, config: dict[str, Any]) -> ArchSpec:
        """Validate ``config`` (a config.json dict) into this family's spec."""
        return self.build(config, self)
