"""Parallelism for mixtral_8x7b, applied in torchtitan's order.

1. tensor parallelism (this model's plan, below), 2. activation checkpointing,
3. torch.compile per block, 4. FSDP2 / HSDP. The generic steps live in
``runtime.distributed.parallelize``; the plan is specific to this model's module names.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    PrepareModuleInputOutput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from runtime.distributed import ParallelDims
from runtime.distributed.expert_parallel import apply_expert_parallel
from runtime.distributed.parallelize import apply_ac, apply_compile, apply_fsdp, dtype_from_name


def parallelize_mixtral(
    model: nn.Module, parallel_dims: ParallelDims, job_config: Any
) -> nn.Module:
    """Apply TP, activation checkpointing, compile and FSDP2 to ``model`` in place."""
    if parallel_dims.tp_enabled:
        apply_tp(model, parallel_dims.tp_mesh)
    if parallel_dims.ep_enabled:
        apply_ep(model, parallel_dims.ep_mesh)
    if job_config.activation_checkpoint.mode != "none":
        apply_ac(model, job_config.activation_checkpoint)
    if job_config.compile.enable and "model" in job_config.compile.components:
        apply_compile(model, job_config.compile)
    if parallel_dims.fsdp_enabled:
        apply_fsdp(
            model,
            parallel_dims.fsdp_mesh,
            param_dtype=dtype_from_name(job_config.training.mixed_precision_param),
            reduce_dtype=dtype_from_name(job_config.training.mixed_precision_reduce),
            pp_enabled=parallel_dims.pp_enabled,
            reshard_after_forward_policy=job_config.parallelism.fsdp_reshard_after_forward,
            expert_mesh=parallel_dims.expert_fsdp_mesh,
        )
    return model


def apply_tp(model: nn.Module, tp_mesh: DeviceMesh) -> None:
    """Megatron-style tensor parallelism with sequence parallel norms.

    q/k/v and w1/w3 are split by output features (column-wise), wo and w2 by input features
    (row-wise), so each rank holds whole attention heads: 32 query heads and 8 key/value heads must
    both divide by the TP degree. Norms run on sequence shards; the embedding is split by vocabulary
    and so is the output projection, whose logits stay sharded over the vocabulary: the runtime's
    loss computes cross entropy on the shards (loss parallel) and ``full_tensor()`` gathers them for
    other uses.
    """
    parallelize_module(
        model,
        tp_mesh,
        {
            "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
            "norm": SequenceParallel(),
            "output": ColwiseParallel(
                input_layouts=Shard(1), output_layouts=Shard(-1), use_local_output=False
            ),
        },
    )
    for block in model.layers.values():
        parallelize_module(
            block,
            tp_mesh,
            {
                "attention_norm": SequenceParallel(),
                "attention": PrepareModuleInput(
                    input_layouts=(Shard(1), None), desired_input_layouts=(Replicate(), None)
                ),
                "attention.wq": ColwiseParallel(),
                "attention.wk": ColwiseParallel(),
                "attention.wv": ColwiseParallel(),
                "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
                "ffn_norm": SequenceParallel(),
                # The experts see the whole sequence and run replicated on every TP rank (same
                # tokens, same weights, same gradients); expert parallelism is what splits them.
                "moe": PrepareModuleInputOutput(
                    input_layouts=(Shard(1),),
                    desired_input_layouts=(Replicate(),),
                    use_local_input=True,
                    output_layouts=(Replicate(),),
                    desired_output_layouts=(Shard(1),),
                ),
            },
        )


def apply_ep(model: nn.Module, ep_mesh: DeviceMesh) -> None:
    """Expert parallelism: each MoE layer's experts split over the EP ranks.

    The EP degree must divide the 8 experts (num_local_experts); each rank keeps a contiguous block
    of them, and tokens travel to their experts and back by all-to-all. FSDP then shards each block
    of experts over the ranks holding the same experts.
    """
    for block in model.layers.values():
        apply_expert_parallel(block.moe, ep_mesh)
