"""Model-agnostic parallelisms a generated ``infra/parallelize.py`` applies after its TP plan.

Order (as in torchtitan): tensor parallel (model-specific, in the package) -> ``apply_ac`` ->
``apply_compile`` -> ``apply_fsdp``. ``apply_ac_compile_fsdp`` runs the last three from the
config in that order.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from runtime.config import ConfigError
from runtime.moe import moe_modules

# Ops whose outputs selective op-level AC keeps (recomputing them would cost the most).
_SAVE_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
}

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_from_name(name: str) -> torch.dtype:
    """Map ``"bfloat16"`` etc. to the torch dtype."""
    return _DTYPES[name]


def _op_policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in _SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def _wrap_block(block: nn.Module, ac_config: Any, layer_index: int) -> nn.Module:
    if ac_config.mode == "full":
        return checkpoint_wrapper(block, preserve_rng_state=False)
    option = ac_config.selective_ac_option
    if option == "op":
        context_fn = partial(create_selective_checkpoint_contexts, _op_policy)
        return checkpoint_wrapper(block, context_fn=context_fn, preserve_rng_state=False)
    if not option.isdigit() or int(option) < 1:
        raise ConfigError(
            "activation_checkpoint.selective_ac_option must be 'op' or a positive int, "
            f"got {option!r}"
        )
    every = int(option)
    if layer_index % every == 0:
        return checkpoint_wrapper(block, preserve_rng_state=False)
    return block


def apply_ac(model: nn.Module, ac_config: Any) -> None:
    """Wrap the blocks of ``model.layers`` (an ``nn.ModuleDict``) for activation checkpointing.

    ``ac_config.mode``: ``"none"`` (nothing), ``"full"`` (every block), ``"selective"`` with
    ``selective_ac_option`` ``"op"`` (keep matmul/attention outputs, recompute the rest) or
    ``"N"`` (every N-th block fully checkpointed).
    """
    if ac_config.mode == "none":
        return
    for index, (name, block) in enumerate(list(model.layers.named_children())):
        model.layers.register_module(name, _wrap_block(block, ac_config, index))


def apply_compile(model: nn.Module, compile_config: Any) -> None:
    """``torch.compile`` each block of ``model.layers`` (fullgraph), if ``"model"`` is enabled.

    Blocks are compiled in place (``Module.compile``) so parameter names stay unchanged.
    """
    if not compile_config.enable or "model" not in compile_config.components:
        return
    for block in model.layers.children():
        block.compile(fullgraph=True)


def _reshard_after_forward(policy: str, pp_enabled: bool) -> bool:
    if policy == "always":
        return True
    if policy == "never":
        return False
    if policy == "default":
        # With pipelining a stage runs several microbatches forward before backward; keeping
        # parameters unsharded between them avoids one all-gather per microbatch.
        return not pp_enabled
    raise ConfigError(
        f"parallelism.fsdp_reshard_after_forward must be default, always or never; got {policy!r}"
    )


def apply_fsdp(
    model: nn.Module,
    dp_mesh: DeviceMesh,
    param_dtype: torch.dtype,
    reduce_dtype: torch.dtype,
    pp_enabled: bool,
    reshard_after_forward_policy: str = "default",
    expert_mesh: DeviceMesh | None = None,
) -> None:
    """Apply FSDP2 ``fully_shard``: embeddings, each block, norm+output together, then the root.

    Tied embeddings join the norm+output unit, since FSDP2 needs a shared parameter in one unit.

    A 2-D ``dp_mesh`` (replicate, shard) gives HSDP. Modules that are None (pipeline stages)
    are skipped. The last unit is never resharded after forward since backward needs it at once.
    """
    mp_policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    shard = partial(fully_shard, mesh=dp_mesh, mp_policy=mp_policy)
    reshard = _reshard_after_forward(reshard_after_forward_policy, pp_enabled)
    embeddings = getattr(model, "tok_embeddings", None)
    output = getattr(model, "output", None)
    # Tied embeddings (output.weight is tok_embeddings.weight) must sit in one FSDP unit.
    tied = embeddings is not None and output is not None and output.weight is embeddings.weight
    if embeddings is not None and not tied:
        shard(embeddings, reshard_after_forward=reshard)
    blocks = list(model.layers.children()) if getattr(model, "layers", None) is not None else []
    if expert_mesh is not None:
        _shard_experts(blocks, expert_mesh, mp_policy, reshard)
    for block in blocks:
        shard(block, reshard_after_forward=reshard)
    head_modules = (embeddings if tied else None, getattr(model, "norm", None), output)
    head = [module for module in head_modules if module is not None]
    if head:
        shard(head, reshard_after_forward=False)
    shard(model, reshard_after_forward=reshard)


def _shard_experts(
    blocks: list[nn.Module],
    expert_mesh: DeviceMesh,
    mp_policy: MixedPrecisionPolicy,
    reshard: bool,
) -> None:
    """FSDP units of their own for expert-parallel experts (DTensors on the EP mesh), sharded
    over the shard ranks holding the same experts (their gradients: see
    ``runtime.distributed.expert_parallel.AllToAllDispatcher``)."""
    for moe in moe_modules(blocks):
        fully_shard(
            moe.experts, mesh=expert_mesh, mp_policy=mp_policy, reshard_after_forward=reshard
        )


def apply_ac_compile_fsdp(model: nn.Module, parallel_dims: Any, job_config: Any) -> nn.Module:
    """Apply AC, compile and FSDP2/HSDP to ``model`` as ``job_config`` asks; returns the model.

    Call this after the model-specific tensor-parallel plan.
    """
    apply_ac(model, job_config.activation_checkpoint)
    apply_compile(model, job_config.compile)
    if parallel_dims.fsdp_enabled:
        apply_fsdp(
            model,
            parallel_dims.fsdp_mesh,
            param_dtype=dtype_from_name(job_config.training.mixed_precision_param),
            reduce_dtype=dtype_from_name(job_config.training.mixed_precision_reduce),
            pp_enabled=parallel_dims.pp_enabled,
            expert_mesh=parallel_dims.expert_fsdp_mesh,
            reshard_after_forward_policy=job_config.parallelism.fsdp_reshard_after_forward,
        )
    return model
