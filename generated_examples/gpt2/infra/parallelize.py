"""Parallelism for gpt2, applied in torchtitan's order.

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
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from runtime.distributed import ParallelDims
from runtime.distributed.parallelize import apply_ac, apply_compile, apply_fsdp, dtype_from_name


def parallelize_gpt2(model: nn.Module, parallel_dims: ParallelDims, job_config: Any) -> nn.Module:
    """Apply TP, activation checkpointing, compile and FSDP2 to ``model`` in place."""
    if parallel_dims.tp_enabled:
        apply_tp(model, parallel_dims.tp_mesh)
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
        )
    return model


def apply_tp(model: nn.Module, tp_mesh: DeviceMesh) -> None:
    """Megatron-style tensor parallelism with sequence parallel norms.

    q/k/v and w1 are split by output features (column-wise), wo and w2 by input features (row-wise),
    so each rank holds whole attention heads: 12 query heads and 12 key/value heads must both divide
    by the TP degree. Norms run on sequence shards; the embedding is split by vocabulary and so is
    the output projection, whose logits stay sharded over the vocabulary: the runtime's loss
    computes cross entropy on the shards (loss parallel) and ``full_tensor()`` gathers them for
    other uses.
    """
    parallelize_module(
        model,
        tp_mesh,
        {
            "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
            # Position rows split like the vocabulary; the output, [seq, dim], is sharded by
            # sequence to add to the sequence-sharded token embeddings.
            "pos_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(0)),
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
                    input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)
                ),
                "attention.wq": ColwiseParallel(),
                "attention.wk": ColwiseParallel(),
                "attention.wv": ColwiseParallel(),
                "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
                "ffn_norm": SequenceParallel(),
                "feed_forward": PrepareModuleInput(
                    input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)
                ),
                "feed_forward.w1": ColwiseParallel(),
                "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
            },
        )
    # Both shardings split the shared table by vocabulary rows: tie the DTensors again.
    model.output.weight = model.tok_embeddings.weight
