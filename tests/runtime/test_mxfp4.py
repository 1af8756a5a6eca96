"""MXFP4 checkpoint tensors (runtime.mxfp4) against transformers' own dequantization."""

from __future__ import annotations

import pytest
import torch

import runtime.mxfp4
from runtime.mxfp4 import (
    E2M1_VALUES,
    Mxfp4CheckpointError,
    dequantize_mxfp4,
    dequantize_mxfp4_slice,
    mxfp4_groups,
    mxfp4_layout,
    quantize_mxfp4,
)


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


@pytest.mark.parametrize("chunk", [runtime.mxfp4.CHUNK_VALUES, 64])
def test_a_slice_dequantizes_as_the_whole_tensor(chunk: int, monkeypatch) -> None:
    """Any rows and columns (aligned to the 32-value groups or not, a few rows at a time or
    all at once) from just the groups they lie in: that slice of the whole tensor, bit for bit."""
    monkeypatch.setattr(runtime.mxfp4, "CHUNK_VALUES", chunk)
    generator = torch.Generator().manual_seed(2)
    blocks = torch.randint(0, 256, (3, 5, 4, 16), dtype=torch.uint8, generator=generator)
    scales = torch.randint(110, 140, (3, 5, 4), dtype=torch.uint8, generator=generator)
    whole = dequantize_mxfp4(blocks, scales)
    for start, stop in [(0, 128), (0, 32), (5, 6), (31, 33), (40, 100), (96, 128), (7, 7)]:
        groups = mxfp4_groups(slice(start, stop))
        rows = slice(1, 4)
        part = dequantize_mxfp4_slice(
            blocks[1:, rows, groups], scales[1:, rows, groups], slice(start, stop)
        )
        assert torch.equal(part, whole[1:, rows, start:stop]), (start, stop)
    assert mxfp4_groups(slice(31, 33)) == slice(0, 2)
    with pytest.raises(ValueError, match="lie in groups 1:3"):
        dequantize_mxfp4_slice(blocks[..., :1, :], scales[..., :1], slice(40, 70))


def _pair(blocks: tuple[int, ...], scales: tuple[int, ...], dtype=torch.uint8) -> dict:
    return {"w_blocks": (blocks, dtype), "w_scales": (scales, torch.uint8)}


def test_the_layout_is_checked_from_the_headers() -> None:
    """Each pair's dequantized shape from shapes and dtypes alone; a pair that does not fit is
    refused in one line naming its key."""
    assert mxfp4_layout(_pair((4, 6, 3, 16), (4, 6, 3)), ["w"]) == {"w": (4, 6, 96)}
    refused = {
        "does not match": _pair((4, 6, 3, 16), (4, 6, 2)),
        "groups, 16": _pair((4, 6, 3, 8), (4, 6, 3)),
        "is torch.float32": _pair((4, 6, 3, 16), (4, 6, 3), torch.float32),
        "has no w_scales": {"w_blocks": ((4, 6, 3, 16), torch.uint8)},
        "has no w_blocks": {"w_scales": ((4, 6, 3), torch.uint8)},
    }
    for message, shapes in refused.items():
        with pytest.raises(Mxfp4CheckpointError, match=message) as error:
            mxfp4_layout(shapes, ["w"])
        assert "\n" not in str(error.value) and "w_" in str(error.value)
