"""MXFP4 (OCP microscaling FP4) tensors as some hub checkpoints store them.

A quantized ``[..., rows, cols]`` tensor is a pair: ``<name>_blocks`` (uint8 ``[..., rows,
cols / 32, 16]``: each byte packs two FP4 E2M1 values, the low nibble first) and
``<name>_scales`` (uint8 ``[..., rows, cols / 32]``: one E8M0 exponent per group of 32 values,
biased by 127). A value is its E2M1 code's number times ``2 ** (scale - 127)``. Nothing here
knows a model: which tensors are quantized, and their layout, is the checkpoint adapter's.

The sharded import reads such a pair slice by slice: :func:`mxfp4_layout` checks the pairs from
the safetensors headers alone, :func:`mxfp4_groups` names the groups a slice of columns touches
and :func:`dequantize_mxfp4_slice` dequantizes just those (every value depends on its own byte
and its group's scale only, so a slice equals the same slice of the whole tensor, bit for bit).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

GROUP = 32  # values sharing one scale
SCALE_BIAS = 127
CHUNK_VALUES = 1 << 21  # values dequantized at a time by dequantize_mxfp4_slice
# The E2M1 numbers by 4-bit code: sign bit, two exponent bits, one mantissa bit.
E2M1_VALUES = (
    0.0,
    0.5,
    1.0,
    1.5,
    2.0,
    3.0,
    4.0,
    6.0,
    -0.0,
    -0.5,
    -1.0,
    -1.5,
    -2.0,
    -3.0,
    -4.0,
    -6.0,
)
BLOCKS_SUFFIX = "_blocks"
SCALES_SUFFIX = "_scales"


class Mxfp4CheckpointError(ValueError):
    """An MXFP4 pair whose blocks and scales are missing or do not fit each other."""


def dequantize_mxfp4(
    blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The ``[..., rows, cols]`` tensor of an MXFP4 ``blocks`` / ``scales`` pair, in ``dtype``.

    Exact in float32 (every value is a small integer times a power of two).
    """
    if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise ValueError(
            f"MXFP4 blocks and scales are uint8, got {blocks.dtype} and {scales.dtype}"
        )
    if blocks.shape[:-1] != scales.shape or blocks.shape[-1] != GROUP // 2:
        raise ValueError(
            f"MXFP4 blocks {tuple(blocks.shape)} do not match scales {tuple(scales.shape)} "
            f"(blocks: [..., groups, {GROUP // 2}], scales: [..., groups])"
        )
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=blocks.device)
    codes = torch.stack((blocks & 0x0F, blocks >> 4), dim=-1).flatten(-2).long()
    exponents = scales.to(torch.int32) - SCALE_BIAS
    values = torch.ldexp(table[codes], exponents.unsqueeze(-1).float())
    return values.flatten(-2).to(dtype)


def quantize_mxfp4(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``tensor`` ``[..., rows, cols]`` (cols a multiple of 32) as an MXFP4 ``(blocks, scales)``
    pair: each group's scale is the power of two that brings its largest magnitude to at most
    6 (E2M1's largest), each value the nearest E2M1 number (ties to the lower code).

    For writing small quantized checkpoints (tests, tools); ``dequantize_mxfp4`` inverts it up to
    the rounding.
    """
    if tensor.shape[-1] % GROUP:
        raise ValueError(
            f"MXFP4 groups of {GROUP}: last dimension {tensor.shape[-1]} does not split"
        )
    groups = tensor.float().unflatten(-1, (-1, GROUP))
    largest = groups.abs().amax(dim=-1).clamp(min=2.0**-126)
    exponents = torch.ceil(torch.log2(largest / 6.0)).clamp(-SCALE_BIAS, 255 - SCALE_BIAS)
    scaled = groups / torch.exp2(exponents).unsqueeze(-1)
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=tensor.device)
    codes = (scaled.unsqueeze(-1) - table).abs().argmin(dim=-1).to(torch.uint8)
    pairs = codes.unflatten(-1, (-1, 2))
    blocks = pairs[..., 0] | (pairs[..., 1] << 4)
    scales = (exponents + SCALE_BIAS).to(torch.uint8)
    return blocks, scales


def mxfp4_layout(
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]], names: Iterable[str]
) -> dict[str, tuple[int, ...]]:
    """The dequantized shape ``[..., cols]`` of each MXFP4 pair ``names`` (the keys
    without their suffix) from the checkpoint tensors' ``(shape, dtype)`` alone (no data);
    refuses what :func:`dequantize_mxfp4` refuses, in one line naming the key."""
    layout: dict[str, tuple[int, ...]] = {}
    for name in names:
        blocks_key, scales_key = name + BLOCKS_SUFFIX, name + SCALES_SUFFIX
        for key, other in ((blocks_key, scales_key), (scales_key, blocks_key)):
            if key not in shapes:
                raise Mxfp4CheckpointError(f"{other} has no {key} to dequantize it with")
            if shapes[key][1] != torch.uint8:
                raise Mxfp4CheckpointError(f"{key} is {shapes[key][1]}; MXFP4 pairs are uint8")
        blocks, scales = shapes[blocks_key][0], shapes[scales_key][0]
        if len(blocks) < 2 or tuple(blocks[:-1]) != tuple(scales) or blocks[-1] != GROUP // 2:
            raise Mxfp4CheckpointError(
                f"{blocks_key} {list(blocks)} does not match {scales_key} {list(scales)} "
                f"(blocks: [..., groups, {GROUP // 2}], scales: [..., groups])"
            )
        layout[name] = (*scales[:-1], scales[-1] * GROUP)
    return layout


def mxfp4_groups(columns: slice) -> slice:
    """The groups (of :data:`GROUP` values) that columns ``start:stop`` of a dequantized tensor
    lie in: the slice of a pair's group dimension to read for them."""
    if columns.stop <= columns.start:
        return slice(columns.start // GROUP, columns.start // GROUP)
    return slice(columns.start // GROUP, math.ceil(columns.stop / GROUP))


def dequantize_mxfp4_slice(
    blocks: torch.Tensor, scales: torch.Tensor, columns: slice, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Columns ``start:stop`` of the tensor of an MXFP4 pair, from the groups
    :func:`mxfp4_groups` names (``blocks`` ``[..., rows, groups, 16]`` and ``scales``, already
    cut to the rows and leading entries wanted): equal to that slice of
    :func:`dequantize_mxfp4` of the whole pair, bit for bit. Dequantized a few rows at a time
    (:data:`CHUNK_VALUES` values), so the work tensors stay small beside the result."""
    groups = mxfp4_groups(columns)
    if blocks.shape[:-1] != scales.shape or blocks.shape[-2] != groups.stop - groups.start:
        raise ValueError(
            f"columns {columns.start}:{columns.stop} lie in groups {groups.start}:{groups.stop}; "
            f"got blocks {tuple(blocks.shape)} and scales {tuple(scales.shape)}"
        )
    first = columns.start - groups.start * GROUP
    width = max(columns.stop - columns.start, 0)
    out = torch.empty((*blocks.shape[:-2], width), dtype=dtype)
    if out.numel() == 0:
        return out
    rows = max(1, CHUNK_VALUES // (blocks.shape[-2] * GROUP))
    pieces = zip(
        blocks.reshape(-1, *blocks.shape[-2:]).split(rows),
        scales.reshape(-1, scales.shape[-1]).split(rows),
        out.view(-1, width).split(rows),
        strict=True,
    )
    for part, scale, target in pieces:
        target.copy_(dequantize_mxfp4(part, scale, dtype)[:, first : first + width])
    return out
