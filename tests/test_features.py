"""Typed features refuse unknown kinds when the spec is built, never inside a template."""

from __future__ import annotations

import pytest

from scaffolder.errors import ScaffoldError
from scaffolder.families import ALL_RECIPES, RECIPES, build_spec
from scaffolder.features import LocalRope, Norm, QKNorm, SlidingWindow
from tests.helpers import family_config


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Norm(kind="batchnorm"), "Norm.kind: unknown value 'batchnorm'"),
        (lambda: Norm(placement="middle"), "Norm.placement: unknown value 'middle'"),
        (lambda: QKNorm("per_token"), "QKNorm.kind: unknown value 'per_token'"),
        (lambda: SlidingWindow(16, layout="odd_layers"), "SlidingWindow.layout"),
        (lambda: LocalRope(type="yarn", theta=1e4), "LocalRope.type: unknown value 'yarn'"),
    ],
)
def test_unknown_kinds_fail_with_one_line(make, message: str) -> None:
    with pytest.raises(ScaffoldError, match=message) as raised:
        make()
    assert "\n" not in str(raised.value)


def test_sliding_window_properties() -> None:
    assert not SlidingWindow(None).active
    assert SlidingWindow(16).active and not SlidingWindow(16).per_layer
    assert SlidingWindow(16, layout="sliding_window_pattern", pattern=2).per_layer


def test_registry_is_typed_and_complete() -> None:
    """Every model_type maps to exactly one Recipe; each recipe's build returns its family."""
    assert sorted(RECIPES) == sorted(t for recipe in ALL_RECIPES for t in recipe.model_types)
    assert len(RECIPES) == sum(len(recipe.model_types) for recipe in ALL_RECIPES)
    for name in ("qwen3", "gemma2", "gpt2"):
        spec = build_spec(family_config(name))
        assert RECIPES[spec.model_type].name == spec.family
        assert RECIPES[spec.model_type].hf_architecture == spec.hf_architecture
