"""Pipeline parallelism for gpt_oss_20b.

Stages are balanced by weight: each block counts 1, the embedding lookup 1, and the final norm plus
the 201088 x 2880 output projection 1 (its matmul costs about that many blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from runtime.distributed import ParallelDims
from runtime.distributed.pipeline import (
    generate_module_names_per_stage,
    num_pipeline_stages,
    pipeline_llm,
)

from ..model.args import ModelArgs

INPUT_WEIGHT = 1
OUTPUT_WEIGHT = 1


def pipeline_gpt_oss(
    model: nn.Module,
    parallel_dims: ParallelDims,
    job_config: Any,
    device: torch.device,
    model_args: ModelArgs,
    parallelize_fn: Callable[..., nn.Module],
    loss_fn: Callable[..., torch.Tensor],
) -> tuple[Any, list[nn.Module], bool, bool]:
    """Split the model into stages, parallelize each, and build the schedule.

    Returns ``(schedule, model_parts, has_first_stage, has_last_stage)``.
    """
    parallelism = job_config.parallelism
    num_stages = num_pipeline_stages(
        model_args.n_layers,
        parallel_dims.pp,
        parallelism.pipeline_parallel_schedule,
        parallelism.pipeline_parallel_layers_per_stage,
    )
    module_names_per_stage = generate_module_names_per_stage(
        num_stages,
        model_args.n_layers,
        input_weight=INPUT_WEIGHT,
        output_weight=OUTPUT_WEIGHT,
    )
    return pipeline_llm(
        model,
        parallel_dims,
        job_config,
        device,
        model_args,
        parallelize_fn,
        loss_fn,
        module_names_per_stage=module_names_per_stage,
    )
