{%- set s = cookiecutter.spec -%}
{%- set v = cookiecutter.views.torchtitan -%}
{%- set prefix = cookiecutter.class_prefix -%}
"""{% filter prose %}
{{ cookiecutter.display_name }} as a torchtitan 0.3.0 model.
{% endfilter %}

    torchrun --nproc_per_node 2 -m torchtitan.train \\
        --module {{ cookiecutter.package_name }} --config debug_model

{% filter prose -%}
torchtitan imports this module for ``--module {{ cookiecutter.package_name }}`` and calls the ``--config`` function, one per ``train_configs/*.toml`` with the same values.
Only torchtitan imports it (``pip install 'model-scaffolder[torchtitan]'``); the rest of the package does not need torchtitan.
The bridge is thin: the model, its tensor-parallel plan and its state dict adapter are the package's own (``model/``, ``infra/``).
{%- endfilter %}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint import HuggingFaceStorageReader
from torchtitan.components.checkpoint import CheckpointManager
from torchtitan.components.loss import CrossEntropyLoss
from torchtitan.components.metrics import MetricsProcessor
from torchtitan.components.optimizer import default_adamw
from torchtitan.config import CompileConfig, ParallelismConfig, TrainingConfig
from torchtitan.distributed import ParallelDims
from torchtitan.distributed.activation_checkpoint import ActivationCheckpointingConfig, SelectiveAC
from torchtitan.distributed.compile import apply_compile
from torchtitan.protocols import BaseModel
from torchtitan.protocols.model_spec import ModelSpec
from torchtitan.protocols.state_dict_adapter import BaseStateDictAdapter
from torchtitan.trainer import Trainer

from runtime.distributed.parallelize import apply_fsdp, dtype_from_name
from runtime.torchtitan import (
{%- if v.has_experts %}
    AddAuxiliaryLoss,
{%- endif %}
    MockDataLoader,
    NoTokenizer,
    RuntimeLRSchedulers,
{%- if v.has_experts %}
    aux_loss_weight,
{%- endif %}
    disable_gradient_division,
{%- if v.has_experts %}
    moe_load_balancing_hook,
{%- endif %}
)

from . import {{ cookiecutter.package_name }}_configs
{%- if not v.has_experts %}
from .infra.parallelize import apply_tp
{%- endif %}
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import {{ prefix }}StateDictAdapter

{%- if v.has_experts %}

# [moe] of the TOML configs.
LOAD_BALANCING = {{ v.balancing | py }}
EXPERT_BIAS_UPDATE_RATE = 0.001
AUX_LOSS_COEF = {{ v.aux_loss_coef | py }}  # router_aux_loss_coef
{%- endif %}


class {{ prefix }}Model(Transformer, BaseModel):
    """The package's ``Transformer`` as a torchtitan ``BaseModel`` (built by ``Config.build()``).

    Weights are initialized by ``Transformer.init_weights`` (torchtitan calls it after
    ``to_empty``); its modules are plain ``torch.nn`` modules, not torchtitan ``Module``s.
    """

    @dataclass(kw_only=True, slots=True)
    class Config(BaseModel.Config):
        args: ModelArgs = field(default_factory=ModelArgs)

        def update_from_config(self, *, config: Trainer.Config, **kwargs: Any) -> None:
            self.args.update_from_config(config)

        def get_nparams_and_flops(self, model: nn.Module, seq_len: int) -> tuple[int, int]:
            return self.args.get_nparams_and_flops(model, seq_len)

    def __init__(self, config: Config) -> None:
        super().__init__(config.args)
{%- if v.has_experts %}
        # Set by parallelize(): router_aux_loss_coef over the ranks and micro-batches summed.
        self.aux_loss_weight = 0.0
{%- endif %}

    def verify_module_protocol(self) -> None:
        """Plain ``torch.nn`` modules inside: nothing to verify."""

    def init_states(self, *, buffer_device: torch.device | None = None) -> None:
        self.init_weights(buffer_device=buffer_device)
{%- if v.has_experts %}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits; in training the weighted load-balancing loss joins the backward pass."""
        logits = super().forward(tokens)
        if self.training and self.aux_loss_weight:
            aux_loss = self.aux_loss_weight * self.load_balancing_loss()
            logits = AddAuxiliaryLoss.apply(logits, aux_loss)
        return logits
{%- endif %}


def parallelize(
    model: {{ prefix }}Model,
    *,
    parallel_dims: ParallelDims,
    training: TrainingConfig,
    parallelism: ParallelismConfig,
    compile_config: CompileConfig,
    ac_config: ActivationCheckpointingConfig | None,
    dump_folder: str,
) -> nn.Module:
{%- if v.has_experts %}
    """Activation checkpointing, compile, then FSDP2.
{%- else %}
    """Tensor parallel (this package's plan), activation checkpointing, compile, then FSDP2.
{%- endif %}

    FSDP sums gradients over the data-parallel ranks: torchtitan's loss is already divided by
    the global number of tokens.
    """
{%- if v.has_experts %}
    # Under tensor parallelism the experts keep plain-tensor gradients beside the DTensor ones,
    # which torchtitan's gradient clipping cannot mix (the runtime's can).
    if (
        parallel_dims.tp_enabled
        or parallel_dims.ep_enabled
        or parallel_dims.cp_enabled
        or parallel_dims.pp_enabled
    ):
        raise ValueError(
            "this bridge runs data parallelism; train with `scaffold train` for tensor, "
            "expert, context or pipeline parallelism"
        )
{%- else %}
    if parallel_dims.ep_enabled or parallel_dims.cp_enabled or parallel_dims.pp_enabled:
        raise ValueError(
            "this bridge runs data and tensor parallelism; train with `scaffold train` for "
            "expert, context or pipeline parallelism"
        )
    if parallel_dims.tp_enabled:
        apply_tp(model, parallel_dims.get_mesh("tp"))
{%- endif %}
    if ac_config is not None:
        ac_config.build(dump_folder=dump_folder).apply(model)
    if compile_config.enable and "model" in compile_config.components:
        apply_compile(model, compile_config=compile_config, parallel_dims=parallel_dims)
    if parallel_dims.fsdp_enabled:
        names = ["dp_replicate", "fsdp"] if parallel_dims.dp_replicate_enabled else ["fsdp"]
        apply_fsdp(
            model,
            parallel_dims.get_mesh(names),
            param_dtype=dtype_from_name(training.mixed_precision_param),
            reduce_dtype=dtype_from_name(training.mixed_precision_reduce),
            pp_enabled=False,
            reshard_after_forward_policy=parallelism.fsdp_reshard_after_forward,
        )
        disable_gradient_division(model)
{%- if v.has_experts %}
    model.aux_loss_weight = aux_loss_weight(
        LOAD_BALANCING, AUX_LOSS_COEF, training, parallel_dims
    )
{%- endif %}
    return model


class {{ prefix }}TorchtitanAdapter({{ prefix }}StateDictAdapter, BaseStateDictAdapter):
    """The package's adapter for torchtitan's checkpointer (HF load and ``last_save_in_hf``)."""

    def __init__(self, model_config: {{ prefix }}Model.Config, hf_assets_path: str | None):
        super().__init__(model_config.args, hf_assets_path or None)

    def get_hf_storage_reader(
        self, path: str, from_quantized: bool = False
    ) -> HuggingFaceStorageReader:
        if from_quantized:
            raise ValueError("quantized Hugging Face checkpoints do not load into this model")
        return HuggingFaceStorageReader(path)
{%- if cookiecutter.views.adapter.float32 %}

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """transformers' layout, with ``float32_keys`` in float32.

        torchtitan casts the model to checkpoint.export_dtype before its HF save; the tensors
        transformers keeps in float32 go back to float32 here (holding the values that cast
        rounded), as transformers' checkpoints store them.
        """
        return {
            key: value.to(self.hf_dtype(key, value.dtype))
            for key, value in super().to_hf(state_dict).items()
        }
{%- endif %}


def model_registry(flavor: str) -> ModelSpec:
    """The model of ``flavor`` (a key of the package's flavors dict) and its callables."""
    return ModelSpec(
        name={{ cookiecutter.package_name | py }},
        flavor=flavor,
        model={{ prefix }}Model.Config(args={{ cookiecutter.package_name }}_configs[flavor]),
        parallelize_fn=parallelize,
        pipelining_fn=None,
{%- if v.has_experts %}
        post_optimizer_build_fn=moe_load_balancing_hook(
            LOAD_BALANCING, EXPERT_BIAS_UPDATE_RATE, AUX_LOSS_COEF
        ),
{%- else %}
        post_optimizer_build_fn=None,
{%- endif %}
        state_dict_adapter={{ prefix }}TorchtitanAdapter,
    )
{%- for c in v.configs %}


def {{ c.name }}() -> Trainer.Config:
    """{{ c.doc }}"""
    model_spec = model_registry({{ c.flavor | py }})
    return Trainer.Config(
        model_spec=model_spec,
        dump_folder={{ c.dump_folder | py }},
        hf_assets_path="",
        tokenizer=NoTokenizer.Config(),
        dataloader=MockDataLoader.Config(vocab_size=model_spec.model.args.vocab_size, seed=42),
        loss=CrossEntropyLoss.Config(),
        optimizer=default_adamw(lr={{ c.lr | py }}, weight_decay={{ c.weight_decay | py }}),
        lr_scheduler=RuntimeLRSchedulers.Config(
            warmup_steps={{ c.warmup_steps | py }},
            decay_type={{ c.decay_type | py }},
            min_lr_factor={{ c.min_lr_factor | py }},
        ),
        training=TrainingConfig(
            local_batch_size={{ c.local_batch_size | py }},
            global_batch_size={{ c.global_batch_size | py }},
            seq_len={{ c.seq_len | py }},
            max_norm=1.0,
            steps={{ c.steps | py }},
            mixed_precision_param={{ c.mixed_precision_param | py }},
            mixed_precision_reduce="float32",
        ),
        # DTensor for tensor parallelism only, as infra/parallelize.py applies it.
        parallelism=ParallelismConfig(spmd_backend="partial_dtensor"),
        checkpoint=CheckpointManager.Config(
            enable={{ c.checkpoint_enable | py }},
            folder="checkpoint",
            interval={{ c.checkpoint_interval | py }},
            last_save_in_hf={{ c.last_save_in_hf | py }},
        ),
        activation_checkpoint={{ "SelectiveAC.Config()" if c.selective_ac else "None" }},
        compile=CompileConfig(enable={{ c.compile | py }}, components=["model", "loss"]),
        metrics=MetricsProcessor.Config(log_freq={{ c.log_freq | py }}, enable_tensorboard={{ c.enable_tensorboard | py }}),
    )
{%- endfor %}
