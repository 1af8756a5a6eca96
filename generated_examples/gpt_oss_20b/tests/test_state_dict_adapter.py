"""State dict adapter: bit-identical round trips and a checkpoint transformers loads."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from gpt_oss_20b.model.args import ModelArgs
from gpt_oss_20b.model.model import Transformer
from gpt_oss_20b.model.state_dict_adapter import GptOssStateDictAdapter
from runtime.hf_io import load_hf_state_dict, save_hf_checkpoint

from .conftest import build_hf_model, hf_checkpoint


def test_round_trip_from_hf_is_bit_identical(debug_args: ModelArgs) -> None:
    hf_state_dict = hf_checkpoint(build_hf_model(debug_args))
    adapter = GptOssStateDictAdapter(debug_args, None)
    back = adapter.to_hf(adapter.from_hf(hf_state_dict))
    assert back.keys() == hf_state_dict.keys()
    for key, value in hf_state_dict.items():
        assert torch.equal(back[key], value), key


def test_round_trip_to_hf_is_bit_identical(debug_args: ModelArgs) -> None:
    torch.manual_seed(0)
    model = Transformer(debug_args)
    model.init_weights()
    state_dict = model.state_dict()
    adapter = GptOssStateDictAdapter(debug_args, None)
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
    adapter = GptOssStateDictAdapter(debug_args, None)
    save_hf_checkpoint(adapter.to_hf(model.state_dict()), debug_args.to_hf(), tmp_path)

    hf_model = AutoModelForCausalLM.from_pretrained(
        tmp_path, attn_implementation="eager", dtype=torch.float32
    ).eval()
    assert type(hf_model).__name__ == "GptOssForCausalLM"
    tokens = torch.randint(
        0, debug_args.vocab_size, (2, 48), generator=torch.Generator().manual_seed(3)
    )
    with torch.no_grad():
        assert (hf_model(tokens).logits - model(tokens)).abs().max().item() <= 1e-5

    reloaded = Transformer(debug_args).eval()
    reloaded.load_state_dict(adapter.from_hf(load_hf_state_dict(tmp_path)))
    with torch.no_grad():
        assert torch.equal(reloaded(tokens), model(tokens))


def test_mxfp4_hub_experts_import_as_transformers_dequantizes_them(
    debug_args: ModelArgs, tmp_path: Path
) -> None:
    """A folder in the hub's MXFP4 layout (quantized here with runtime.mxfp4) imports to the
    weights transformers' own dequantization (integrations.mxfp4) gives, and the model then
    computes transformers' logits on them."""
    from safetensors.torch import save_file
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from runtime.mxfp4 import quantize_mxfp4

    hf_state_dict = hf_checkpoint(build_hf_model(debug_args))
    hub, dequantized = dict(hf_state_dict), dict(hf_state_dict)
    for layer in range(debug_args.n_layers):
        for template in (
            "model.layers.{}.mlp.experts.gate_up_proj",
            "model.layers.{}.mlp.experts.down_proj",
        ):
            key = template.format(layer)
            # The hub quantizes [experts, out, in] along the input features.
            blocks, scales = quantize_mxfp4(hub.pop(key).transpose(-2, -1))
            hub[key + "_blocks"], hub[key + "_scales"] = blocks, scales
            dequantized[key] = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    (tmp_path / "hub").mkdir()
    save_file(hub, str(tmp_path / "hub" / "model.safetensors"))
    adapter = GptOssStateDictAdapter(debug_args, None)
    imported = adapter.from_hf(load_hf_state_dict(tmp_path / "hub"))
    expected = adapter.from_hf(dequantized)
    assert imported.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(imported[key], value), key

    save_hf_checkpoint(dequantized, debug_args.to_hf(), tmp_path / "dequantized")
    hf_model = AutoModelForCausalLM.from_pretrained(
        tmp_path / "dequantized", attn_implementation="eager", dtype=torch.float32
    ).eval()
    model = Transformer(debug_args).eval()
    model.load_state_dict(imported)
    tokens = torch.randint(
        0, debug_args.vocab_size, (2, 48), generator=torch.Generator().manual_seed(5)
    )
    with torch.no_grad():
        assert (hf_model(tokens).logits - model(tokens)).abs().max().item() <= 1e-5
