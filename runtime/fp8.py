"""Block-quantized FP8 checkpoints (DeepSeek-V3's hub weights): dequantized on import.

Such a checkpoint stores a weight ``<name>.weight`` as ``float8_e4m3fn`` next to
``<name>.weight_scale_inv``, float32 with one scale per block of the weight (config.json's
``quantization_config.weight_block_size``, ``[128, 128]`` on the hub): the weight is
``fp8.float() * scale_inv``, each scale broadcast over its block; the last block of a row or a
column may be partial. Tensors without a scale pass through. The result is float32 (exact: an
FP8 value times a float32 scale); loading into the model casts it to the training dtype.
Keyed on the tensor names only, so the runtime stays family-agnostic.
"""

from __future__ import annotations

import math
from typing import Any

import torch

SCALE_SUFFIX = "_scale_inv"
DEFAULT_BLOCK = (128, 128)
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


class Fp8CheckpointError(ValueError):
    """An FP8 checkpoint whose scales do not fit its weights."""


def block_size(config: dict[str, Any]) -> tuple[int, int]:
    """``quantization_config.weight_block_size`` of a config.json (default 128 x 128)."""
    quantization = config.get("quantization_config") or {}
    block = quantization.get("weight_block_size", DEFAULT_BLOCK)
    if (
        not isinstance(block, list | tuple)
        or len(block) != 2
        or not all(
            isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in block
        )
    ):
        raise Fp8CheckpointError(
            f"quantization_config.weight_block_size must be two positive integers, got {block!r}"
        )
    return int(block[0]), int(block[1])


def dequantize_block_weight(
    weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int]
) -> torch.Tensor:
    """``weight`` ``[rows, cols]`` (FP8) times its per-block ``scale_inv``, in float32."""
    rows, cols = weight.shape
    expected = (math.ceil(rows / block[0]), math.ceil(cols / block[1]))
    if tuple(scale_inv.shape) != expected:
        raise Fp8CheckpointError(
            f"scale_inv {tuple(scale_inv.shape)} does not fit a {rows} x {cols} weight in "
            f"{block[0]} x {block[1]} blocks (expected {expected})"
        )
    scale = scale_inv.float().repeat_interleave(block[0], dim=0)[:rows]
    scale = scale.repeat_interleave(block[1], dim=1)[:, :cols]
    return weight.float() * scale


def dequantize_fp8(
    tensors: dict[str, torch.Tensor], config: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """``tensors`` with every FP8 weight dequantized and the ``*_scale_inv`` tensors dropped."""
    if not any(key.endswith(SCALE_SUFFIX) for key in tensors):
        return tensors
    block = block_size(config)
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key.endswith(SCALE_SUFFIX):
            if key.removesuffix(SCALE_SUFFIX) not in tensors:
                raise Fp8CheckpointError(f"{key} has no weight {key.removesuffix(SCALE_SUFFIX)}")
            continue
        scale = tensors.get(key + SCALE_SUFFIX)
        if scale is not None:
            if value.dim() != 2:
                raise Fp8CheckpointError(
                    f"{key}: block scales need a 2-D weight, got {value.dim()}-D"
                )
            out[key] = dequantize_block_weight(value, scale, block)
        elif value.dtype in FP8_DTYPES:
            raise Fp8CheckpointError(f"{key} is {value.dtype} but has no {key}{SCALE_SUFFIX}")
        else:
            out[key] = value
    return out
