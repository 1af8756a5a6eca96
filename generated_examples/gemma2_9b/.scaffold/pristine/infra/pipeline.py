"""Pipeline parallelism for gemma2_9b: not available.

The embedding table is tied to the output projection (tie_word_embeddings), so the first and
the last stage would have to share one weight. Train with FSDP and tensor parallelism instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from runtime.distributed import ParallelDims

from ..model.args import ModelArgs


def pipeline_gemma2(
    model: nn.Module,
    parallel_dims: ParallelDims,
    job_config: Any,
    device: torch.device,
    model_args: ModelArgs,
    parallelize_fn: Callable[..., nn.Module],
    loss_fn: Callable[..., torch.Tensor],
) -> tuple[Any, list[nn.Module], bool, bool]:
    """Refuse pipeline parallelism with one clear message."""
    raise ValueError(
        "parallelism.pipeline_parallel_degree must be 1 for this model: its embeddings are tied "
        "to the output projection (tie_word_embeddings)"
    )
