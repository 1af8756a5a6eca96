"""Pipeline parallelism for decoder models with torch.distributed.pipelining.

The model is split by module names: stage ``s`` keeps the input modules (first stage:
``tok_embeddings``, plus whatever the package names in ``input_modules``), a run of
``layers.<i>`` and ``norm`` + ``output`` (last stage); modules it does not keep are set to None
(or removed from ``layers``) and the model's forward skips them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.distributed.pipelining import PipelineStage
from torch.distributed.pipelining.schedules import (
    PipelineScheduleMulti,
    Schedule1F1B,
    ScheduleGPipe,
    ScheduleInterleaved1F1B,
)

from runtime.config import ConfigError

SCHEDULES: dict[str, type] = {
    "1F1B": Schedule1F1B,
    "GPipe": ScheduleGPipe,
    "Interleaved1F1B": ScheduleInterleaved1F1B,
}

# torchtitan's top-level module names around ``layers``; a package adds its own input modules.
INPUT_MODULES = ("tok_embeddings",)
OUTPUT_MODULES = ("norm", "output")


def generate_module_names_per_stage(
    num_stages: int,
    num_layers: int,
    input_weight: int = 1,
    output_weight: int = 1,
    input_modules: tuple[str, ...] = INPUT_MODULES,
) -> list[list[str]]:
    """Split ``input_modules``, ``layers.0..n-1`` and ``norm``/``output`` into balanced stages.

    ``input_modules`` are the top-level modules the first stage runs before ``layers.0``: the
    token embeddings, and any other the package's model has there (a learned position table).
    They count as ``input_weight`` layers (on the first stage) and norm+output as
    ``output_weight`` layers (on the last); each layer goes to the stage in whose equal share of
    the total weight its midpoint falls. Every stage keeps at least one transformer layer.
    """
    if num_stages < 1:
        raise ConfigError(f"pipeline: the number of stages must be >= 1, got {num_stages}")
    if num_stages > num_layers:
        raise ConfigError(f"pipeline: {num_stages} stages but only {num_layers} layers")
    counts = _layers_per_stage(num_stages, num_layers, input_weight, output_weight)
    stages: list[list[str]] = []
    first = 0
    for count in counts:
        stages.append([f"layers.{index}" for index in range(first, first + count)])
        first += count
    stages[0][:0] = list(input_modules)
    stages[-1].extend(OUTPUT_MODULES)
    return stages


def _layers_per_stage(
    num_stages: int, num_layers: int, input_weight: int, output_weight: int
) -> list[int]:
    total = num_layers + input_weight + output_weight
    counts = [0] * num_stages
    for index in range(num_layers):
        middle = input_weight + index + 0.5
        counts[min(num_stages - 1, int(middle * num_stages / total))] += 1
    while 0 in counts:
        # Give an empty stage a layer from the fullest one; counts define contiguous ranges.
        counts[counts.index(0)] += 1
        counts[counts.index(max(counts))] -= 1
    return counts


def split_model(
    model: nn.Module, module_names: list[str], module_names_per_stage: list[list[str]]
) -> nn.Module:
    """Deep-copy ``model`` keeping only ``module_names`` (one entry of ``module_names_per_stage``).

    Every top-level module of ``model`` besides ``layers`` must be in some stage; those another
    stage owns become None, and layers not named are removed.
    """
    staged = {name for names in module_names_per_stage for name in names}
    unstaged = [
        name for name, _ in model.named_children() if name != "layers" and name not in staged
    ]
    if unstaged:
        raise ConfigError(
            f"pipeline: top-level module(s) {', '.join(unstaged)} are in no stage; name them in "
            "the package's input_modules or module_names_per_stage"
        )
    part = copy.deepcopy(model)
    keep = set(module_names)
    for name in staged - keep:
        if not name.startswith("layers.") and getattr(part, name, None) is not None:
            setattr(part, name, None)
    for layer_name in list(part.layers.keys()):
        if f"layers.{layer_name}" not in keep:
            del part.layers[layer_name]
    return part


def num_pipeline_stages(
    num_layers: int, pp_degree: int, schedule: str, layers_per_stage: int
) -> int:
    """How many stages ``schedule`` needs on ``pp_degree`` ranks (validated, one-line errors)."""
    if layers_per_stage > 0:
        stages = math.ceil(num_layers / layers_per_stage)
    else:
        stages = pp_degree * (2 if issubclass(SCHEDULES[schedule], PipelineScheduleMulti) else 1)
    if stages % pp_degree:
        raise ConfigError(
            f"pipeline: {stages} stages do not divide evenly over pipeline_parallel_degree "
            f"{pp_degree}; change pipeline_parallel_layers_per_stage"
        )
    single = not issubclass(SCHEDULES[schedule], PipelineScheduleMulti)
    if single and stages != pp_degree:
        raise ConfigError(
            f"pipeline: schedule {schedule} runs one stage per rank but {stages} stages were "
            "requested; use Interleaved1F1B or drop pipeline_parallel_layers_per_stage"
        )
    return stages


def _n_microbatches(job_config: Any, pp_degree: int) -> int:
    local_batch = job_config.training.local_batch_size
    microbatch = job_config.parallelism.pipeline_parallel_microbatch_size
    if microbatch < 1 or local_batch % microbatch:
        raise ConfigError(
            f"parallelism.pipeline_parallel_microbatch_size {microbatch} must divide "
            f"training.local_batch_size {local_batch}"
        )
    return local_batch // microbatch


def _num_layers(model: nn.Module) -> int:
    return len(model.layers)


def pipeline_llm(
    model: nn.Module,
    parallel_dims: Any,
    job_config: Any,
    device: torch.device,
    model_args: Any,
    parallelize_fn: Callable[..., nn.Module],
    loss_fn: Callable[..., torch.Tensor],
    module_names_per_stage: list[list[str]] | None = None,
    input_modules: tuple[str, ...] = INPUT_MODULES,
) -> tuple[Any, list[nn.Module], bool, bool]:
    """Split the meta ``model`` into this rank's pipeline stages and build the schedule.

    Without ``module_names_per_stage`` the stages come from
    :func:`generate_module_names_per_stage` with ``input_modules`` (the package's first-stage
    modules). Stages are placed round-robin ("loop" style): stage ``s`` runs on pp rank
    ``s % pp``. Each part is parallelized by ``parallelize_fn(part, parallel_dims, job_config)``.
    Returns ``(schedule, model_parts, has_first_stage, has_last_stage)``; call
    ``schedule.step(inputs, target=labels, losses=[])`` on every pp rank (inputs on the first
    stage, target on the last).

    The schedule divides each microbatch loss by the number of microbatches instead of scaling
    gradients after the step, so gradients accumulate exactly across several ``step`` calls
    and the microbatch losses it reports sum to the batch mean.
    """
    pp_mesh = parallel_dims.pp_mesh
    pp_degree, pp_rank = pp_mesh.size(), pp_mesh.get_local_rank()
    schedule_name = job_config.parallelism.pipeline_parallel_schedule
    num_layers = _num_layers(model)
    if module_names_per_stage is None:
        num_stages = num_pipeline_stages(
            num_layers,
            pp_degree,
            schedule_name,
            job_config.parallelism.pipeline_parallel_layers_per_stage,
        )
        module_names_per_stage = generate_module_names_per_stage(
            num_stages, num_layers, input_modules=input_modules
        )
    num_stages = len(module_names_per_stage)
    stage_ids = list(range(pp_rank, num_stages, pp_degree))
    stages, parts = [], []
    for stage_id in stage_ids:
        part = split_model(model, module_names_per_stage[stage_id], module_names_per_stage)
        part = parallelize_fn(part, parallel_dims, job_config)
        parts.append(part)
        stages.append(
            PipelineStage(part, stage_id, num_stages, device, group=pp_mesh.get_group("pp"))
        )
    n_microbatches = _n_microbatches(job_config, pp_degree)
    schedule = _build_schedule(schedule_name, stages, n_microbatches, loss_fn)
    has_first = 0 in stage_ids
    has_last = num_stages - 1 in stage_ids
    return schedule, parts, has_first, has_last


class _MicrobatchMeanLoss:
    """``loss_fn / n_microbatches``: the schedule's gradients then sum to the batch mean."""

    def __init__(self, loss_fn: Callable[..., torch.Tensor], n_microbatches: int):
        self.loss_fn = loss_fn
        self.n_microbatches = n_microbatches

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(output, target) / self.n_microbatches


def _build_schedule(name: str, stages: list[PipelineStage], n_microbatches: int, loss_fn: Any):
    schedule_cls = SCHEDULES[name]
    kwargs = {
        "n_microbatches": n_microbatches,
        "loss_fn": _MicrobatchMeanLoss(loss_fn, n_microbatches),
        # Scaling after each step would rescale gradients accumulated by earlier steps too.
        "scale_grads": False,
    }
    if issubclass(schedule_cls, PipelineScheduleMulti):
        return schedule_cls(stages, **kwargs)
    if len(stages) != 1:
        raise ConfigError(f"pipeline: schedule {name} needs exactly one stage per rank")
    return schedule_cls(stages[0], **kwargs)
