{%- set s = cookiecutter.spec -%}
{%- set v = cookiecutter.views.infra -%}
"""Parallelism for {{ cookiecutter.display_name }}, applied in torchtitan's order.

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
{%- if v.has_experts %}
    PrepareModuleInputOutput,
{%- endif %}
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

{%- if v.sharded_feature_norm %}
from torch.distributed.tensor import DTensor, distribute_module, distribute_tensor
from torch.distributed.tensor.parallel import ParallelStyle
{%- endif %}

from runtime.distributed import ParallelDims
{%- if v.has_experts %}
from runtime.distributed.expert_parallel import apply_expert_parallel
{%- endif %}
from runtime.distributed.parallelize import apply_ac, apply_compile, apply_fsdp, dtype_from_name
{%- if v.sharded_feature_norm %}


class ShardedFeatureNorm(ParallelStyle):
    """TP for an RMSNorm over features that ColwiseParallel splits across ranks.

    q_norm and k_norm norm a whole q or k projection, all heads at once, while each rank holds
    only its heads' features: the norm weight is split the same way (Shard(0)) and DTensor sums
    the squares over the ranks (an all-reduce of one value per token).
    """

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        return distribute_module(
            module,
            device_mesh,
            partition_fn=self._shard_parameters,
            input_fn=self._features_sharded,
            output_fn=self._local_features,
        )

    @staticmethod
    def _shard_parameters(name: str, module: nn.Module, device_mesh: DeviceMesh) -> None:
        for param_name, param in list(module.named_parameters(recurse=False)):
            sharded = nn.Parameter(distribute_tensor(param, device_mesh, [Shard(0)]))
            module.register_parameter(param_name, sharded)

    @staticmethod
    def _features_sharded(module: nn.Module, inputs: Any, device_mesh: DeviceMesh) -> Any:
        return tuple(
            DTensor.from_local(x, device_mesh, [Shard(x.dim() - 1)], run_check=False)
            for x in inputs
        )

    @staticmethod
    def _local_features(module: nn.Module, output: Any, device_mesh: DeviceMesh) -> Any:
        return output.redistribute(placements=[Shard(output.dim() - 1)]).to_local()
{%- endif %}


def parallelize_{{ s.family }}(
    model: nn.Module, parallel_dims: ParallelDims, job_config: Any
) -> nn.Module:
    """Apply TP, activation checkpointing, compile and FSDP2 to ``model`` in place."""
    if parallel_dims.tp_enabled:
        apply_tp(model, parallel_dims.tp_mesh)
{%- if v.has_experts %}
    if parallel_dims.ep_enabled:
        apply_ep(model, parallel_dims.ep_mesh)
{%- endif %}
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
{%- if v.has_experts %}
            expert_mesh=parallel_dims.expert_fsdp_mesh,
{%- endif %}
        )
    return model


def apply_tp(model: nn.Module, tp_mesh: DeviceMesh) -> None:
    """Megatron-style tensor parallelism with sequence parallel norms.

{% filter prose(indent=4) %}
{{ v.column_modules }} are split by output features (column-wise), wo and w2 by input features (row-wise), so each rank holds whole attention heads: {{ s.n_heads }} query heads and {{ s.n_kv_heads }} key/value heads must both divide by the TP degree.
Norms run on sequence shards; the embedding is split by vocabulary and so is the output projection, whose logits stay sharded over the vocabulary: the runtime's loss computes cross entropy on the shards (loss parallel) and ``full_tensor()`` gathers them for other uses.
{% endfilter %}
    """
    parallelize_module(
        model,
        tp_mesh,
        {
{%- for entry in v.model_plan %}
{%- if entry.comment %}
{{ entry.comment | comment_lines(width=88) | indent(12, first=True) }}
{%- endif %}
            {{ entry.module | py }}: {{ entry.style }},
{%- endfor %}
        },
    )
    for block in model.layers.values():
        parallelize_module(
            block,
            tp_mesh,
            {
{%- for entry in v.block_plan %}
{%- if entry.comment %}
{{ entry.comment | comment_lines(width=84) | indent(16, first=True) }}
{%- endif %}
                {{ entry.module | py }}: {{ entry.style }},
{%- endfor %}
            },
        )
{%- if v.moe_plan %}
        # decoder_sparse_step and mlp_only_layers: experts here, or a dense MLP.
        if block.moe_enabled:
            parallelize_module(
                block,
                tp_mesh,
                {
{%- for entry in v.moe_plan %}
{%- if entry.comment %}
{{ entry.comment | comment_lines(width=80) | indent(20, first=True) }}
{%- endif %}
                    {{ entry.module | py }}: {{ entry.style }},
{%- endfor %}
                },
            )
        else:
            parallelize_module(
                block,
                tp_mesh,
                {
{%- for entry in v.dense_plan %}
                    {{ entry.module | py }}: {{ entry.style }},
{%- endfor %}
                },
            )
{%- endif %}
{%- if s.tie_word_embeddings %}
    # Both shardings split the shared table by vocabulary rows: tie the DTensors again.
    model.output.weight = model.tok_embeddings.weight
{%- endif %}
{%- if v.has_experts %}


def apply_ep(model: nn.Module, ep_mesh: DeviceMesh) -> None:
    """{{ v.ep_doc | prose(indent=4, first_indent=0) }}
    """
    for block in model.layers.values():
{%- if v.moe_plan %}
        if block.moe_enabled:
            apply_expert_parallel(block.moe, ep_mesh)
{%- else %}
        apply_expert_parallel(block.moe, ep_mesh)
{%- endif %}
{%- endif %}
