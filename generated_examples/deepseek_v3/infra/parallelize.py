"""Parallelism for deepseek_v3, applied in torchtitan's order.

1. tensor parallelism (this model's plan, below), 2. activation checkpointing,
3. torch.compile per block, 4. FSDP2 / HSDP. The generic steps live in
``runtime.distributed.parallelize``; the plan is specific to this model's module names.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed._functional_collectives as funcol
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    PrepareModuleInputOutput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from runtime.distributed import ParallelDims
from runtime.distributed.expert_parallel import apply_expert_parallel
from runtime.distributed.parallelize import apply_ac, apply_compile, apply_fsdp, dtype_from_name


class _SumLastChannelsGradient(torch.autograd.Function):
    """Identity forward; backward sums the gradient of the last ``channels`` outputs over a
    process group (the others are already whole on every rank)."""

    @staticmethod
    def forward(ctx: Any, output: torch.Tensor, channels: int, group: Any) -> torch.Tensor:
        ctx.channels, ctx.group = channels, group
        return output.view_as(output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        kept, shared = grad.split([grad.shape[-1] - ctx.channels, ctx.channels], dim=-1)
        shared = funcol.all_reduce(shared.contiguous(), "sum", ctx.group)
        return torch.cat((kept, shared), dim=-1), None, None


class SumRotaryKeyGradient(ParallelStyle):
    """TP for wkv_a (kv_a_proj_with_mqa), which runs whole on every rank.

    Its last ``qk_rope_head_dim`` outputs are the rotary key every head shares; with the heads
    split over ranks each rank's heads give only their share of that key's gradient, so it is
    summed over the ranks. The latent's gradient comes back whole through wkv_b.
    """

    def __init__(self, rope_dim: int) -> None:
        super().__init__()
        self.rope_dim = rope_dim

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        group = device_mesh.get_group()

        def sum_rotary_key_gradient(module: nn.Module, inputs: Any, output: Any) -> Any:
            return _SumLastChannelsGradient.apply(output, self.rope_dim, group)

        module.register_forward_hook(sum_rotary_key_gradient)
        return module


def parallelize_deepseek_v3(
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

    wq_b, wkv_b and w1/w3 are split by output features (column-wise), wo and w2 by input features
    (row-wise), so each rank holds whole attention heads: 128 heads must divide by the TP degree.
    Norms run on sequence shards; the embedding is split by vocabulary and so is the output
    projection, whose logits stay sharded over the vocabulary: the runtime's loss computes cross
    entropy on the shards (loss parallel) and ``full_tensor()`` gathers them for other uses.
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
                # Attention sees the whole sequence as a plain tensor: the low-rank projections into
                # the latents and their norms (wq_a, q_norm, wkv_a, kv_norm) run whole on every
                # rank; the projections out of them split by head.
                "attention": PrepareModuleInput(
                    input_layouts=(Shard(1), None),
                    desired_input_layouts=(Replicate(), None),
                    use_local_output=True,
                ),
                # Every head reads the one rotary key wkv_a makes: each rank's heads give only their
                # share of its gradient, summed here over the ranks.
                "attention.wkv_a": SumRotaryKeyGradient(block.attention.qk_rope_head_dim),
                "attention.wq_b": ColwiseParallel(),
                "attention.wkv_b": ColwiseParallel(),
                "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
                "ffn_norm": SequenceParallel(),
            },
        )
        # first_k_dense_replace: experts here, or a dense MLP.
        if block.moe_enabled:
            parallelize_module(
                block,
                tp_mesh,
                {
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
        else:
            parallelize_module(
                block,
                tp_mesh,
                {
                    "feed_forward": PrepareModuleInput(
                        input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)
                    ),
                    "feed_forward.w1": ColwiseParallel(),
                    "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
                    "feed_forward.w3": ColwiseParallel(),
                },
            )


def apply_ep(model: nn.Module, ep_mesh: DeviceMesh) -> None:
    """Expert parallelism: each MoE layer's experts split over the EP ranks.

    The EP degree must divide the 256 experts (n_routed_experts); each rank keeps a contiguous block
    of them, and tokens travel to their experts and back by all-to-all. FSDP then shards each block
    of experts over the ranks holding the same experts.
    """
    for block in model.layers.values():
        if block.moe_enabled:
            apply_expert_parallel(block.moe, ep_mesh)
