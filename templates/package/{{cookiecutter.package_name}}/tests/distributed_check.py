{%- set s = cookiecutter.spec -%}
{%- set v = cookiecutter.views.infra -%}
"""This package's parallelize and pipeline functions on 2 CPU ranks against one device.

{% filter prose %}
Run by ``test_distributed.py`` as ``torchrun --nproc_per_node 2 -m {{ cookiecutter.package_name }}.tests.distributed_check``.
Every rank first computes the single-device reference (same weights, same batch); then the debug model is parallelized with tensor parallel 2, with FSDP 2{% if v.has_experts %}, with expert parallel 2 (and FSDP){% endif %}{% if v.has_pipeline %}, and split into 2 pipeline stages{% endif %}, and its loss (and, for all but the pipeline, every gradient) must match the reference.
{% endfilter %}
"""

from __future__ import annotations
{% if s.rope and s.rope.type == "dynamic" %}
import dataclasses
{% endif %}
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    set_model_state_dict,
)
from torch.distributed.tensor import DTensor

from runtime.components import build_cross_entropy_loss
from runtime.config import JobConfig
from runtime.distributed import ParallelDims
from runtime.distributed.utils import exit_process
from {{ cookiecutter.package_name }} import get_train_spec

WORLD_SIZE = 2
LOSS_RTOL = 1e-5
GRAD_ATOL = 1e-5


def job_config(**parallelism: int) -> JobConfig:
    config = JobConfig()
    config.training.mixed_precision_param = "float32"
    config.training.mixed_precision_reduce = "float32"
    config.training.local_batch_size = 4
    config.parallelism.pipeline_parallel_microbatch_size = 2
    for name, value in parallelism.items():
        setattr(config.parallelism, name, value)
    return config


def batch(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vocab_size, (4, 33), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def reference(spec, args, inputs, labels, loss_fn):
    torch.manual_seed(0)
    model = spec.model_cls(args)
    model.init_weights()
    loss = loss_fn(model(inputs), labels)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return model.state_dict(), loss.item(), grads


def parallel_model(spec, args, dims: ParallelDims, config: JobConfig, state_dict):
    with torch.device("meta"):
        model = spec.model_cls(args)
    spec.parallelize_fn(model, dims, config)
    model.to_empty(device="cpu")
    model.init_weights(buffer_device=torch.device("cpu"))
    # set_model_state_dict replaces the dict's values with DTensors: hand it a copy.
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, dict(state_dict), options=options)
    return model


def full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def check_close(name: str, value: float, expected: float) -> None:
    if abs(value - expected) > LOSS_RTOL * abs(expected):
        raise AssertionError(f"{name}: loss {value} != single-device {expected}")


def check_tp_or_fsdp(name, spec, args, state_dict, ref_loss, ref_grads, **degrees) -> None:
    config = job_config(**degrees)
    dims = ParallelDims.from_config(config.parallelism, WORLD_SIZE)
    dims.build_mesh("cpu")
    model = parallel_model(spec, args, dims, config, state_dict)
    inputs, labels = batch(args.vocab_size)
    loss = build_cross_entropy_loss(config)(model(inputs), labels)
    loss.backward()
    check_close(name, full(loss).item(), ref_loss)
    for param_name, param in model.named_parameters():
        grad = full(param.grad)
        if not torch.allclose(grad, ref_grads[param_name], atol=GRAD_ATOL, rtol=1e-4):
            raise AssertionError(f"{name}: gradient of {param_name} differs")

{% if v.has_pipeline %}
def check_pipeline(spec, args, state_dict, ref_loss) -> None:
    config = job_config(pipeline_parallel_degree=2, data_parallel_shard_degree=1)
    dims = ParallelDims.from_config(config.parallelism, WORLD_SIZE)
    dims.build_mesh("cpu")
    with torch.device("meta"):
        model = spec.model_cls(args)
    loss_fn = build_cross_entropy_loss(config)
    schedule, parts, has_first, has_last = spec.pipelining_fn(
        model, dims, config, torch.device("cpu"), args, spec.parallelize_fn, loss_fn
    )
    options = StateDictOptions(full_state_dict=True, strict=False)
    for part in parts:
        part.to_empty(device="cpu")
        part.init_weights(buffer_device=torch.device("cpu"))
        set_model_state_dict(part, dict(state_dict), options=options)
    inputs, labels = batch(args.vocab_size)
    losses: list[torch.Tensor] = []
    if has_first:
        schedule.step(inputs, target=labels if has_last else None, losses=losses)
    else:
        schedule.step(target=labels, losses=losses)
    loss = torch.stack(losses).sum() if has_last else torch.zeros(())
    dist.broadcast(loss, src=WORLD_SIZE - 1)
    check_close("pipeline 2", loss.item(), ref_loss)

{% endif %}
def main() -> None:
    dist.init_process_group("gloo")
    spec = get_train_spec()
{%- if s.rope and s.rope.type == "dynamic" %}
    # The batch's 32 tokens run past a max_position_embeddings of 24: dynamic NTK recomputes
    # the rotary frequencies in attention, which sees the whole sequence (under tensor
    # parallelism the blocks around it see half).
    args = dataclasses.replace(spec.model_args["debugmodel"], max_seq_len=24)
{%- else %}
    args = spec.model_args["debugmodel"]
{%- endif %}
    inputs, labels = batch(args.vocab_size)
    loss_fn = build_cross_entropy_loss(job_config())
    state_dict, ref_loss, ref_grads = reference(spec, args, inputs, labels, loss_fn)
    check_tp_or_fsdp(
        "tensor parallel 2",
        spec,
        args,
        state_dict,
        ref_loss,
        ref_grads,
        tensor_parallel_degree=2,
        data_parallel_shard_degree=1,
    )
    check_tp_or_fsdp(
        "FSDP 2", spec, args, state_dict, ref_loss, ref_grads, data_parallel_shard_degree=2
    )
{%- if v.has_experts %}
    check_tp_or_fsdp(
        "expert parallel 2",
        spec,
        args,
        state_dict,
        ref_loss,
        ref_grads,
        data_parallel_shard_degree=2,
        expert_parallel_degree=2,
    )
{%- endif %}
{%- if v.has_pipeline %}
    check_pipeline(spec, args, state_dict, ref_loss)
{%- endif %}
    dist.barrier()
    if dist.get_rank() == 0:
        print("distributed checks passed")


if __name__ == "__main__":
    main()
    exit_process(0)  # destroys the process group; skips a teardown gloo can abort in
