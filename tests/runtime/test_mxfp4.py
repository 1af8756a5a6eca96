"""MXFP4 checkpoint tensors (runtime.mxfp4) against transformers' own dequantization."""

from __future__ import annotations

import pytest
import torch

from runtime.mxfp4 import E2M1_VALUES, dequantize_mxfp4, quantize_mxfp4


def test_dequantize_matches_transformers() -> None:
    """Every E2M1 code in both nibbles, scales across the exponent range: transformers'
    convert_moe_packed_tensors (which also transposes to [experts, in, out]) gives the same."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    generator = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, 256, (3, 8, 4, 16), dtype=torch.uint8, generator=generator)
    blocks[0, 0, 1] = torch.arange(16, dtype=torch.uint8) * 17  # codes 0..15, both nibbles
    scales = torch.randint(100, 150, (3, 8, 4), dtype=torch.uint8, generator=generator)
    scales[0, 0] = torch.tensor([0, 127, 128, 254], dtype=torch.uint8)
    ours = dequantize_mxfp4(blocks, scales)
    theirs = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    assert ours.shape == (3, 8, 128)
    assert torch.equal(ours.transpose(1, 2), theirs)
    assert ours[0, 1, :32].tolist() != [0.0] * 32
    assert ours[0, 0, 32:64:2].tolist() == list(E2M1_VALUES)  # scale 127: the codes themselves


def test_quantize_rounds_to_the_nearest_value_of_its_group() -> None:
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(2, 16, 64, generator=generator) * 0.05
    blocks, scales = quantize_mxfp4(weight)
    assert blocks.shape == (2, 16, 2, 16) and scales.shape == (2, 16, 2)
    restored = dequantize_mxfp4(blocks, scales)
    step = torch.exp2(scales.float() - 127).unsqueeze(-1)  # E2M1's largest gap is 2: half is 1
    assert ((restored - weight).unflatten(-1, (-1, 32)).abs() <= step).all()
    # Each group's largest magnitude lands in E2M1's top binade (scaled into (3, 6]).
    largest = weight.unflatten(-1, (-1, 32)).abs().amax(-1) / step.squeeze(-1)
    assert ((largest > 3) & (largest <= 6)).all()
    # Values already on the grid come back exactly.
    assert torch.equal(dequantize_mxfp4(*quantize_mxfp4(restored)), restored)


def test_mismatched_pairs_are_refused() -> None:
    blocks = torch.zeros(2, 4, 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match="do not match"):
        dequantize_mxfp4(blocks, torch.zeros(2, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        dequantize_mxfp4(blocks.float(), torch.zeros(2, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="groups of 32"):
        quantize_mxfp4(torch.zeros(4, 48))
