"""The recipes' config fields (what the generated ModelArgs reads) against transformers."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from scaffolder.config_fields import ConfigFields
from scaffolder.families import build_spec
from scaffolder.views.args import args_view
from tests.helpers import FAMILY_CONFIGS, family_config

FAMILIES = sorted(path.stem for path in FAMILY_CONFIGS.glob("*.json"))
# Old-style top-level rope fields: where transformers keeps their defaults (rope_parameters).
ROPE_DEFAULTS = {
    "rope_theta": ("rope_theta",),
    "rotary_emb_base": ("rope_theta",),
    "rotary_pct": ("partial_rotary_factor",),
    "partial_rotary_factor": ("partial_rotary_factor",),
}
LAYER_ROPE_DEFAULTS = {
    "rope_theta": ("full_attention", "rope_theta"),
    "rope_local_base_freq": ("sliding_attention", "rope_theta"),
}


def transformers_default(model_type: str, name: str) -> Any:
    """What transformers' config class assumes for field ``name`` when config.json omits it."""
    from transformers import CONFIG_MAPPING

    config_class = CONFIG_MAPPING[model_type]
    declared = {item.name: item for item in dataclasses.fields(config_class)}
    if name in declared and name not in ("rope_theta", "partial_rotary_factor"):
        return declared[name].default
    if name == "sliding_window_pattern":  # builds layer_types; not a declared field
        layer_types = config_class(num_hidden_layers=12).layer_types
        return layer_types.index("full_attention") + 1
    rope = config_class().rope_parameters
    path = (LAYER_ROPE_DEFAULTS if "full_attention" in rope else ROPE_DEFAULTS).get(name)
    if path is not None:
        for key in path:
            rope = rope[key]
        return rope
    # Not a field of the config class: transformers' model takes the fallback (None here).
    return None


@pytest.mark.parametrize("family", FAMILIES)
def test_stated_defaults_are_the_config_class_defaults(family: str) -> None:
    spec = build_spec(family_config(family))
    defaults = spec.config_fields.defaults
    found = {name: transformers_default(spec.model_type, name) for name in defaults}
    assert found == dict(defaults)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_field_read_is_required_or_defaulted(family: str) -> None:
    """args_view raises KeyError for a field read with neither a stated default nor required."""
    view = args_view(build_spec(family_config(family)))
    reads = " ".join(field.read for field in view.fields)
    assert "config[" in reads and "config.get(" in reads


def test_a_field_neither_required_nor_defaulted_is_an_error() -> None:
    with pytest.raises(KeyError, match="max_position_embeddings"):
        ConfigFields(defaults={}).is_required("max_position_embeddings")
    assert ConfigFields(defaults={}).is_required("vocab_size")


@pytest.mark.parametrize("family", FAMILIES)
def test_stated_rope_default_is_the_config_class_one(family: str) -> None:
    """Where a config class's rope without rope_parameters/rope_scaling is not plain rope
    (GptOssConfig: YaRN), the recipe states it, and that is transformers' own."""
    from transformers import CONFIG_MAPPING

    spec = build_spec(family_config(family))
    rope = dict(getattr(CONFIG_MAPPING[spec.model_type](), "rope_parameters", None) or {})
    if "full_attention" in rope:  # per layer type: the local/global families' own fields
        return
    rope.pop("rope_theta", None)
    stated = dict(spec.config_fields.rope_default)
    assert stated == ({} if rope.get("rope_type", "default") == "default" else rope)


def test_a_config_without_rope_fields_reads_as_the_config_class_does(tmp_path) -> None:
    """gpt-oss without rope_scaling: transformers rotates with its default YaRN, and so do the
    package's ModelArgs.from_hf and check_architecture."""
    import importlib.util
    import sys

    from scaffolder.render import write_package

    config = family_config("gpt_oss", rope_scaling=None)
    spec = build_spec(config)
    assert spec.rope.type == "yarn" and spec.rope.truncate is False
    write_package(generate_from(config, tmp_path), tmp_path / "pkg")
    path = tmp_path / "pkg" / "model" / "args.py"
    module_spec = importlib.util.spec_from_file_location("pkg_args_under_test", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    try:
        module_spec.loader.exec_module(module)
        module.check_architecture(config)
        args = module.ModelArgs.from_hf(config)
    finally:
        del sys.modules[module_spec.name]
    assert (args.rope_factor, args.rope_original_max_seq_len) == (32.0, 4096)
    assert args.rope_attention_factor == pytest.approx(spec.rope.attention_factor)


def generate_from(config: dict[str, Any], folder) -> dict[str, str]:
    """The files of ``config``'s package (written to ``folder/config.json`` first)."""
    import json

    from scaffolder.generate import generate

    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return generate(str(path), name="pkg").files
