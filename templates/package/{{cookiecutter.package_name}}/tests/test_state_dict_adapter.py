{%- set s = cookiecutter.spec -%}
{%- set v = cookiecutter.views.adapter -%}
"""State dict adapter: bit-identical round trips and a checkpoint transformers loads."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from runtime.hf_io import load_hf_state_dict, save_hf_checkpoint
from {{ cookiecutter.package_name }}.model.args import ModelArgs
from {{ cookiecutter.package_name }}.model.model import Transformer
from {{ cookiecutter.package_name }}.model.state_dict_adapter import {{ cookiecutter.class_prefix }}StateDictAdapter

from .conftest import build_hf_model, hf_checkpoint


def test_round_trip_from_hf_is_bit_identical(debug_args: ModelArgs) -> None:
    hf_state_dict = hf_checkpoint(build_hf_model(debug_args))
    adapter = {{ cookiecutter.class_prefix }}StateDictAdapter(debug_args, None)
    back = adapter.to_hf(adapter.from_hf(hf_state_dict))
    assert back.keys() == hf_state_dict.keys()
    for key, value in hf_state_dict.items():
        assert torch.equal(back[key], value), key


def test_round_trip_to_hf_is_bit_identical(debug_args: ModelArgs) -> None:
    torch.manual_seed(0)
    model = Transformer(debug_args)
    model.init_weights()
    state_dict = model.state_dict()
    adapter = {{ cookiecutter.class_prefix }}StateDictAdapter(debug_args, None)
    back = adapter.from_hf(adapter.to_hf(state_dict))
    assert back.keys() == state_dict.keys()
    for key, value in state_dict.items():
        assert torch.equal(back[key], value), key


def test_export_loads_in_transformers_with_identical_logits(
    debug_args: ModelArgs, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = Transformer(debug_args).eval()
    model.init_weights()
    adapter = {{ cookiecutter.class_prefix }}StateDictAdapter(debug_args, None)
    save_hf_checkpoint(adapter.to_hf(model.state_dict()), debug_args.to_hf(), tmp_path)

    hf_model = AutoModelForCausalLM.from_pretrained(
        tmp_path, attn_implementation="eager", dtype=torch.float32
    ).eval()
    assert type(hf_model).__name__ == {{ s.hf_architecture | py }}
    tokens = torch.randint(0, debug_args.vocab_size, (2, 48), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (hf_model(tokens).logits - model(tokens)).abs().max().item() <= 1e-5

    reloaded = Transformer(debug_args).eval()
    reloaded.load_state_dict(adapter.from_hf(load_hf_state_dict(tmp_path)))
    with torch.no_grad():
        assert torch.equal(reloaded(tokens), model(tokens))
{%- if v.selection_bias %}


def test_expert_bias_exports_as_the_checkpoint_selection_bias(
    debug_args: ModelArgs, tmp_path: Path
) -> None:
    """A trained expert_bias is transformers' {{ v.selection_bias }}: same routing, same logits."""
    torch.manual_seed(0)
    model = Transformer(debug_args).eval()
    model.init_weights()
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("moe.expert_bias"):
                buffer.copy_(torch.randn_like(buffer))
    adapter = {{ cookiecutter.class_prefix }}StateDictAdapter(debug_args, None)
    hf_state_dict = adapter.to_hf(model.state_dict())
    assert any(key.endswith({{ ("." ~ v.selection_bias) | py }}) for key in hf_state_dict)
    save_hf_checkpoint(hf_state_dict, debug_args.to_hf(), tmp_path)
    hf_model = AutoModelForCausalLM.from_pretrained(
        tmp_path, attn_implementation="eager", dtype=torch.float32
    ).eval()
    tokens = torch.randint(0, debug_args.vocab_size, (2, 48), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (hf_model(tokens).logits - model(tokens)).abs().max().item() <= 1e-5
{%- endif %}
{%- if v.extra_layers %}


def test_from_hf_skips_layers_past_num_hidden_layers(debug_args: ModelArgs) -> None:
    """The hub's multi-token prediction layer: a block's tensors plus its own, numbered
    num_hidden_layers."""
    hf_state_dict = hf_checkpoint(build_hf_model(debug_args))
    last, extra_layer = f"model.layers.{debug_args.n_layers - 1}.", f"model.layers.{debug_args.n_layers}."
    extra = {
        extra_layer + key.removeprefix(last): value
        for key, value in hf_state_dict.items()
        if key.startswith(last)
    }
    extra[extra_layer + "enorm.weight"] = torch.ones(debug_args.dim)
    adapter = {{ cookiecutter.class_prefix }}StateDictAdapter(debug_args, None)
    expected = adapter.from_hf(hf_state_dict)
    loaded = adapter.from_hf({**hf_state_dict, **extra})
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
{%- endif %}
{%- if v.mxfp4 %}
{% include 'parts/tests/mxfp4.py.j2' %}
{%- endif %}
{%- if v.reads_older %}


def test_from_hf_reads_older_checkpoints(debug_args: ModelArgs) -> None:
    """{{ v.older_doc }}"""
    hf_state_dict = hf_checkpoint(build_hf_model(debug_args))
    older = {
        {{ v.older_key }}: value for key, value in hf_state_dict.items()
    }
{%- if v.older_buffers %}
    # Non-parameter buffers: from_hf skips them, whatever they hold.
    buffers = {{ v.older_buffers | py }}
    for layer in range(debug_args.n_layers):
        older.update((buffer.format(layer), torch.zeros(1)) for buffer in buffers)
{%- endif %}
    adapter = {{ cookiecutter.class_prefix }}StateDictAdapter(debug_args, None)
    expected = adapter.from_hf(hf_state_dict)
    loaded = adapter.from_hf(older)
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
{%- endif %}
