"""FP8 block-quantized checkpoints (DeepSeek-V3's hub layout) dequantize on import.

The folder is a tiny DeepseekV3ForCausalLM written by ``save_pretrained`` and quantized here the
way the hub's files are: every projection weight as float8_e4m3fn plus a float32
``weight_scale_inv`` per block, with ``quantization_config.weight_block_size`` in config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from runtime.config import ConfigError
from runtime.fp8 import dequantize_block_weight
from runtime.hf import read_hf_folder

FP8_MAX = torch.finfo(torch.float8_e4m3fn).max


def quantize(weight: torch.Tensor, block: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` as FP8 with one float32 scale per block (partial blocks at the edges)."""
    rows, cols = weight.shape
    n_rows, n_cols = -(-rows // block[0]), -(-cols // block[1])
    scales = torch.empty(n_rows, n_cols)
    quantized = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(n_rows):
        for j in range(n_cols):
            rows_ij = slice(i * block[0], (i + 1) * block[0])
            cols_ij = slice(j * block[1], (j + 1) * block[1])
            tile = weight[rows_ij, cols_ij].float()
            scales[i, j] = tile.abs().max().clamp(min=1e-12) / FP8_MAX
            quantized[rows_ij, cols_ij] = (tile / scales[i, j]).to(torch.float8_e4m3fn)
    return quantized, scales


def blockwise_reference(quantized: torch.Tensor, scales: torch.Tensor, block) -> torch.Tensor:
    """Dequantized one block at a time, as the definition reads."""
    out = torch.empty(quantized.shape)
    for i in range(scales.shape[0]):
        for j in range(scales.shape[1]):
            rows = slice(i * block[0], (i + 1) * block[0])
            cols = slice(j * block[1], (j + 1) * block[1])
            out[rows, cols] = quantized[rows, cols].float() * scales[i, j]
    return out


def test_partial_edge_blocks_take_their_own_scales() -> None:
    torch.manual_seed(0)
    weight = torch.randn(300, 200)
    quantized, scales = quantize(weight, (128, 128))
    assert scales.shape == (3, 2)
    dequantized = dequantize_block_weight(quantized, scales, (128, 128))
    assert torch.equal(dequantized, blockwise_reference(quantized, scales, (128, 128)))
    torch.testing.assert_close(dequantized, weight, rtol=0.07, atol=1e-3)


def _tiny_deepseek_folder(folder: Path, block: tuple[int, int]) -> dict[str, torch.Tensor]:
    """A save_pretrained folder quantized in the hub's layout; returns the original tensors."""
    config = DeepseekV3Config(
        vocab_size=128,
        hidden_size=48,
        intermediate_size=80,
        moe_intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_routed_experts=4,
        n_shared_experts=1,
        num_experts_per_tok=2,
        n_group=2,
        topk_group=1,
        first_k_dense_replace=1,
        q_lora_rank=40,
        kv_lora_rank=20,
        qk_nope_head_dim=8,
        qk_rope_head_dim=4,
        v_head_dim=8,
    )
    torch.manual_seed(0)
    DeepseekV3ForCausalLM(config).save_pretrained(folder)
    original = load_file(str(folder / "model.safetensors"))
    quantized: dict[str, torch.Tensor] = {}
    for key, value in original.items():
        if key.endswith("_proj.weight") or key.endswith("_proj_with_mqa.weight"):
            quantized[key], quantized[key + "_scale_inv"] = quantize(value, block)
        else:
            quantized[key] = value
    save_file(quantized, str(folder / "model.safetensors"), metadata={"format": "pt"})
    hf_config = json.loads((folder / "config.json").read_text())
    hf_config["quantization_config"] = {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": list(block),
    }
    (folder / "config.json").write_text(json.dumps(hf_config))
    return original


def test_import_dequantizes_a_hub_layout_folder(tmp_path: Path) -> None:
    block = (16, 16)  # the tiny weights span several blocks, with partial ones at the edges
    original = _tiny_deepseek_folder(tmp_path, block)
    stored = load_file(str(tmp_path / "model.safetensors"))
    config, tensors = read_hf_folder(tmp_path)
    assert config["quantization_config"]["quant_method"] == "fp8"
    assert sorted(tensors) == sorted(original)  # the scales are gone, every weight is there
    quantized = [key for key in stored if key.endswith("_scale_inv")]
    assert any("experts.0.gate_proj" in key for key in quantized)
    assert any("kv_a_proj_with_mqa" in key for key in quantized)
    for key, value in tensors.items():
        if key + "_scale_inv" in stored:
            expected = blockwise_reference(stored[key], stored[key + "_scale_inv"], block)
            assert value.dtype == torch.float32
            assert torch.equal(value, expected), key
            torch.testing.assert_close(value, original[key].float(), rtol=0.07, atol=2e-3)
        else:
            assert torch.equal(value, original[key]), key


def test_scales_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    _tiny_deepseek_folder(tmp_path, (16, 16))
    hf_config = json.loads((tmp_path / "config.json").read_text())
    hf_config["quantization_config"]["weight_block_size"] = [32, 32]
    (tmp_path / "config.json").write_text(json.dumps(hf_config))
    with pytest.raises(ConfigError, match="scale_inv .* does not fit"):
        read_hf_folder(tmp_path)


def test_an_fp8_weight_without_its_scale_is_refused(tmp_path: Path) -> None:
    _tiny_deepseek_folder(tmp_path, (16, 16))
    stored = load_file(str(tmp_path / "model.safetensors"))
    dropped = next(key for key in stored if key.endswith("q_a_proj.weight_scale_inv"))
    del stored[dropped]
    save_file(stored, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="has no .*weight_scale_inv"):
        read_hf_folder(tmp_path)
