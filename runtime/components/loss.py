"""Cross-entropy loss over next-token labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token cross entropy in fp32; ``logits [B, L, V]``, ``labels [B, L]``.

    DTensor logits (a tensor-parallel output layer that keeps them sharded) are gathered first.
    """
    if isinstance(logits, DTensor):
        logits = logits.full_tensor()
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(0, 1))


def build_cross_entropy_loss(job_config: Any = None) -> Callable[..., torch.Tensor]:
    """The loss function; compiled when ``compile.enable`` and ``"loss"`` is a component."""
    compile_config = getattr(job_config, "compile", None)
    if compile_config is not None and compile_config.enable and "loss" in compile_config.components:
        return torch.compile(cross_entropy_loss)
    return cross_entropy_loss
