"""MXFP4 (OCP microscaling FP4) tensors as some hub checkpoints store them.

A quantized ``[..., rows, cols]`` tensor is a pair: ``<name>_blocks`` (uint8 ``[..., rows,
cols / 32, 16]``: each byte packs two FP4 E2M1 values, the low nibble first) and
``<name>_scales`` (uint8 ``[..., rows, cols / 32]``: one E8M0 exponent per group of 32 values,
biased by 127). A value is its E2M1 code's number times ``2 ** (scale - 127)``. Nothing here
knows a model: which tensors are quantized, and their layout, is the checkpoint adapter's.
"""

from __future__ import annotations

import torch

GROUP = 32  # values sharing one scale
SCALE_BIAS = 127
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
