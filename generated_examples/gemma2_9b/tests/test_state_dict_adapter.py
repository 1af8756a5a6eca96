"""State dict adapter: bit-identical round trips and a checkpoint transformers loads."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from gemma2_9b.model.args import ModelArgs
from gemma2_9b.model.model import Transformer
from gemma2_9b.model.state_dict_adapter import Gemma2StateDictAdapter
from runtime.hf_io import load_hf_state_dict, save_hf_checkpoint

from .conftest import build_hf_model, hf_checkpoint


def test_round_trip_from_hf_is_bit_identical(debug_args: ModelArgs) -> None:
    hf_state_dict = hf_checkpoint(build_hf_model(debug_args))
    adapter = Gemma2StateDictAdapter(debug_args, None)
    back = adapter.to_hf(adapter.from_hf(hf_state_dict))
    assert back.keys() == hf_state_dict.keys()
    for key, value in hf_state_dict.items():
        assert torch.equal(back[key], value), key


def test_round_trip_to_hf_is_bit_identical(debug_args: ModelArgs) -> None:
    torch.manual_seed(0)
    model = Transformer(debug_args)
    model.init_weights()
    state_dict = model.state_dict()
    adapter = Gemma2StateDictAdapter(debug_args, None)
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
    adapter = Gemma2StateDictAdapter(debug_args, None)
    save_hf_checkpoint(adapter.to_hf(model.state_dict()), debug_args.to_hf(), tmp_path)

    hf_model = AutoModelForCausalLM.from_pretrained(
        tmp_path, attn_implementation="eager", dtype=torch.float32
    ).eval()
    assert type(hf_model).__name__ == "Gemma2ForCausalLM"
    tokens = torch.randint(
        0, debug_args.vocab_size, (2, 48), generator=torch.Generator().manual_seed(3)
    )
    with torch.no_grad():
        assert (hf_model(tokens).logits - model(tokens)).abs().max().item() <= 1e-5

    reloaded = Transformer(debug_args).eval()
    reloaded.load_state_dict(adapter.from_hf(load_hf_state_dict(tmp_path)))
    with torch.no_grad():
        assert torch.equal(reloaded(tokens), model(tokens))
