{%- set s = cookiecutter.spec -%}
{%- set t = cookiecutter.views.args_test -%}
"""ModelArgs against config.json, and the train configs against ModelArgs."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from transformers import {{ s.hf_config_class }}

from {{ cookiecutter.package_name }} import {{ cookiecutter.package_name }}_configs
from {{ cookiecutter.package_name }}.model.args import ModelArgs

from .conftest import PACKAGE_DIR

FULL_FLAVOR = {{ s.size_name | py }}


def test_full_flavor_is_the_source_config(hf_config: dict[str, Any]) -> None:
    assert ModelArgs.from_hf(hf_config) == {{ cookiecutter.package_name }}_configs[FULL_FLAVOR]
    assert ModelArgs() == {{ cookiecutter.package_name }}_configs[FULL_FLAVOR]


def test_to_hf_round_trips(debug_args: ModelArgs) -> None:
    assert ModelArgs.from_hf(debug_args.to_hf()) == debug_args


{%- if t.rope_styles == "none" %}
def test_to_hf_states_every_field_transformers_would_default_differently() -> None:
    """No RoPE fields: the config's own names ({{ t.dim_field }}, ...) and zero dropouts."""
    config = {{ cookiecutter.package_name }}_configs[FULL_FLAVOR].to_hf()
    assert {{ s.hf_config_class }}(**config).to_dict()[{{ t.dim_field | py }}] == config[{{ t.dim_field | py }}]
    assert all(config[name] == 0.0 for name in {{ t.zeroed | py }})
{%- elif t.rope_styles == "per_layer_type_scaled" %}
def test_rope_parameters_are_read_per_layer_type(hf_config: dict[str, Any]) -> None:
    """Scaled local RoPE exists only in the new style (rope_parameters keyed by layer type)."""
    args = ModelArgs.from_hf(hf_config)
    config = {{ s.hf_config_class }}(**hf_config)
    assert args.rope_theta == config.rope_parameters["full_attention"]["rope_theta"]
    assert args.rope_local_theta == config.rope_parameters["sliding_attention"]["rope_theta"]
{%- else %}
def test_old_and_new_rope_styles_agree() -> None:
    """The config class's old-style rope fields read as its rope_parameters do."""
    new_style = {{ cookiecutter.package_name }}_configs[FULL_FLAVOR].to_hf()
    old_style = dict(new_style)
{%- if t.rope_styles == "per_layer_type" %}
    rope = old_style.pop("rope_parameters")
    full = dict(rope["full_attention"])
    old_style[{{ t.theta_field | py }}] = full.pop("rope_theta")
    old_style["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
    old_style.pop("layer_types")
    old_style["sliding_window_pattern"] = new_style["layer_types"].index("full_attention") + 1
{%- if t.rope_scaled %}
    old_style["rope_scaling"] = full
{%- endif %}
{%- else %}
    rope = dict(old_style.pop("rope_parameters"))
    old_style[{{ t.theta_field | py }}] = rope.pop("rope_theta")
{%- if t.partial_field and t.partial %}
    old_style[{{ t.partial_field | py }}] = rope.pop("partial_rotary_factor")
{%- endif %}
{%- if t.rope_scaled %}
    old_style["rope_scaling"] = {"type": rope.pop("rope_type"), **rope}
{%- endif %}
{%- endif %}
    assert ModelArgs.from_hf(old_style) == ModelArgs.from_hf(new_style)
    # transformers reads both the same way too.
    old, new = {{ s.hf_config_class }}(**old_style), {{ s.hf_config_class }}(**new_style)
{%- if t.rope_styles == "flat" and t.rope_scaled %}
    # (It keeps the old "type" spelling next to rope_type.)
    assert {k: v for k, v in old.rope_parameters.items() if k != "type"} == new.rope_parameters
{%- else %}
    assert old.rope_parameters == new.rope_parameters
{%- endif %}
{%- endif %}


def test_a_different_architecture_is_refused(hf_config: dict[str, Any]) -> None:
    flipped = dict(hf_config, tie_word_embeddings=not {{ s.tie_word_embeddings | py }})
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        ModelArgs.from_hf(flipped)
{%- if t.sliding_refusal %}


def test_a_config_that_{{ "does_not_slide" if t.slides else "slides" }}_is_refused(hf_config: dict[str, Any]) -> None:
{%- if t.sliding_refusal == "max_window_layers" and t.slides %}
    changed = dict(hf_config, use_sliding_window=False)
{%- elif t.sliding_refusal == "max_window_layers" %}
    changed = dict(hf_config, use_sliding_window=True, sliding_window=4096, max_window_layers=0)
    changed.pop("layer_types", None)
{%- else %}
    changed = dict(hf_config, sliding_window={{ "None" if t.slides else "4096" }})
{%- endif %}
    with pytest.raises(ValueError, match="sliding_window_attention"):
        ModelArgs.from_hf(changed)
{%- endif %}
{%- if t.partial_refusal %}


def test_a_config_with_{{ "full" if t.partial else "partial" }}_rotary_is_refused(hf_config: dict[str, Any]) -> None:
    changed = dict(hf_config, {{ t.partial_field }}={{ "1.0" if t.partial else "0.5" }})
    with pytest.raises(ValueError, match="partial_rotary"):
        ModelArgs.from_hf(changed)
{%- endif %}


def load_toml(name: str) -> dict[str, Any]:
    with open(PACKAGE_DIR / "train_configs" / name, "rb") as f:
        return tomllib.load(f)


@pytest.mark.parametrize("name", ["debug_model.toml", "{{ cookiecutter.package_name }}.toml"])
def test_train_configs_name_this_package_and_a_flavor(name: str) -> None:
    config = load_toml(name)
    assert config["model"]["name"] == {{ cookiecutter.package_name | py }}
    args = {{ cookiecutter.package_name }}_configs[config["model"]["flavor"]]
    assert config["training"]["seq_len"] <= args.max_seq_len
    parallelism = config["parallelism"]
    assert args.n_heads % parallelism["tensor_parallel_degree"] == 0
    assert args.n_kv_heads % parallelism["tensor_parallel_degree"] == 0
    assert args.n_layers >= parallelism["pipeline_parallel_degree"]


def test_full_size_config_uses_the_checkpoint_dtype_for_compute() -> None:
    config = load_toml("{{ cookiecutter.package_name }}.toml")
    assert config["model"]["flavor"] == FULL_FLAVOR
    assert config["training"]["mixed_precision_param"] == {{ s.torch_dtype | py }}
