"""deepseek_v3 as a torchtitan 0.3.0 model.

    torchrun --nproc_per_node 2 -m torchtitan.train \\
        --module deepseek_v3 --config debug_model

torchtitan imports this module for ``--module deepseek_v3`` and calls the ``--config`` function, one
per ``train_configs/*.toml`` with the same values. Only torchtitan imports it
(``pip install 'model-scaffolder[torchtitan]'``); the rest of the package does not need torchtitan.
The bridge is thin: the model, its tensor-parallel plan and its state dict adapter are the package's
own (``model/``, ``infra/``).
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
    AddAuxiliaryLoss,
    MockDataLoader,
    NoTokenizer,
    RuntimeLRSchedulers,
    aux_loss_weight,
    disable_gradient_division,
    moe_load_balancing_hook,
)

from . import deepseek_v3_configs
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import DeepseekV3StateDictAdapter

# [moe] of the TOML configs.
LOAD_BALANCING = "expert_bias"
EXPERT_BIAS_UPDATE_RATE = 0.001
AUX_LOSS_COEF = 0.0  # router_aux_loss_coef


class DeepseekV3Model(Transformer, BaseModel):
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
        # Set by parallelize(): router_aux_loss_coef over the ranks and micro-batches summed.
        self.aux_loss_weight = 0.0

    def verify_module_protocol(self) -> None:
        """Plain ``torch.nn`` modules inside: nothing to verify."""

    def init_states(self, *, buffer_device: torch.device | None = None) -> None:
        self.init_weights(buffer_device=buffer_device)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits; in training the weighted load-balancing loss joins the backward pass."""
        logits = super().forward(tokens)
        if self.training and self.aux_loss_weight:
            aux_loss = self.aux_loss_weight * self.load_balancing_loss()
            logits = AddAuxiliaryLoss.apply(logits, aux_loss)
        return logits


def parallelize(
    model: DeepseekV3Model,
    *,
    parallel_dims: ParallelDims,
    training: TrainingConfig,
    parallelism: ParallelismConfig,
    compile_config: CompileConfig,
    ac_config: ActivationCheckpointingConfig | None,
    dump_folder: str,
) -> nn.Module:
    """Activation checkpointing, compile, then FSDP2.

    FSDP sums gradients over the data-parallel ranks: torchtitan's loss is already divided by
    the global number of tokens.
    """
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
    model.aux_loss_weight = aux_loss_weight(LOAD_BALANCING, AUX_LOSS_COEF, training, parallel_dims)
    return model


class DeepseekV3TorchtitanAdapter(DeepseekV3StateDictAdapter, BaseStateDictAdapter):
    """The package's adapter for torchtitan's checkpointer (HF load and ``last_save_in_hf``)."""

    def __init__(self, model_config: DeepseekV3Model.Config, hf_assets_path: str | None):
        super().__init__(model_config.args, hf_assets_path or None)

    def get_hf_storage_reader(
        self, path: str, from_quantized: bool = False
    ) -> HuggingFaceStorageReader:
        if from_quantized:
            raise ValueError("quantized Hugging Face checkpoints do not load into this model")
        return HuggingFaceStorageReader(path)

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


def model_registry(flavor: str) -> ModelSpec:
    """The model of ``flavor`` (a key of the package's flavors dict) and its callables."""
    return ModelSpec(
        name="deepseek_v3",
        flavor=flavor,
        model=DeepseekV3Model.Config(args=deepseek_v3_configs[flavor]),
        parallelize_fn=parallelize,
        pipelining_fn=None,
        post_optimizer_build_fn=moe_load_balancing_hook(
            LOAD_BALANCING, EXPERT_BIAS_UPDATE_RATE, AUX_LOSS_COEF
        ),
        state_dict_adapter=DeepseekV3TorchtitanAdapter,
    )


def debug_model() -> Trainer.Config:
    """Debug run: small dims, same features, fp32, mock data (debug_model.toml)."""
    model_spec = model_registry("debugmodel")
    return Trainer.Config(
        model_spec=model_spec,
        dump_folder="./outputs/deepseek_v3_debug",
        hf_assets_path="",
        tokenizer=NoTokenizer.Config(),
        dataloader=MockDataLoader.Config(vocab_size=model_spec.model.args.vocab_size, seed=42),
        loss=CrossEntropyLoss.Config(),
        optimizer=default_adamw(lr=0.0008, weight_decay=0.1),
        lr_scheduler=RuntimeLRSchedulers.Config(
            warmup_steps=2,
            decay_type="linear",
            min_lr_factor=0.0,
        ),
        training=TrainingConfig(
            local_batch_size=4,
            global_batch_size=8,
            seq_len=128,
            max_norm=1.0,
            steps=10,
            mixed_precision_param="float32",
            mixed_precision_reduce="float32",
        ),
        # DTensor for tensor parallelism only, as infra/parallelize.py applies it.
        parallelism=ParallelismConfig(spmd_backend="partial_dtensor"),
        checkpoint=CheckpointManager.Config(
            enable=False,
            folder="checkpoint",
            interval=5,
            last_save_in_hf=False,
        ),
        activation_checkpoint=None,
        compile=CompileConfig(enable=False, components=["model", "loss"]),
        metrics=MetricsProcessor.Config(log_freq=1, enable_tensorboard=False),
    )


def deepseek_v3() -> Trainer.Config:
    """Full-size 671B continued pretraining (deepseek_v3.toml)."""
    model_spec = model_registry("671B")
    return Trainer.Config(
        model_spec=model_spec,
        dump_folder="./outputs/deepseek_v3",
        hf_assets_path="",
        tokenizer=NoTokenizer.Config(),
        dataloader=MockDataLoader.Config(vocab_size=model_spec.model.args.vocab_size, seed=42),
        loss=CrossEntropyLoss.Config(),
        optimizer=default_adamw(lr=0.0003, weight_decay=0.1),
        lr_scheduler=RuntimeLRSchedulers.Config(
            warmup_steps=200,
            decay_type="cosine",
            min_lr_factor=0.1,
        ),
        training=TrainingConfig(
            local_batch_size=4,
            global_batch_size=-1,
            seq_len=8192,
            max_norm=1.0,
            steps=1000,
            mixed_precision_param="bfloat16",
            mixed_precision_reduce="float32",
        ),
        # DTensor for tensor parallelism only, as infra/parallelize.py applies it.
        parallelism=ParallelismConfig(spmd_backend="partial_dtensor"),
        checkpoint=CheckpointManager.Config(
            enable=True,
            folder="checkpoint",
            interval=500,
            last_save_in_hf=True,
        ),
        activation_checkpoint=SelectiveAC.Config(),
        compile=CompileConfig(enable=True, components=["model", "loss"]),
        metrics=MetricsProcessor.Config(log_freq=10, enable_tensorboard=True),
    )
