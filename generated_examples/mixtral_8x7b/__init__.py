"""mixtral_8x7b: model package for the model-scaffolder runtime.

Flavors: ``debugmodel`` (small dimensions, the same features) and ``46.7B`` (the
full-size model from config.json). ``get_train_spec()`` is registered on import.
"""

from runtime.components import (
    build_cross_entropy_loss,
    build_dataloader,
    build_lr_schedulers,
    build_optimizers,
    build_tokenizer,
)
from runtime.protocols import TrainSpec, register_train_spec

from .infra.parallelize import parallelize_mixtral
from .infra.pipeline import pipeline_mixtral
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import MixtralStateDictAdapter

__all__ = [
    "MixtralStateDictAdapter",
    "ModelArgs",
    "Transformer",
    "get_train_spec",
    "mixtral_8x7b_configs",
]

mixtral_8x7b_configs = {
    "debugmodel": ModelArgs(
        vocab_size=2048,
        dim=256,
        n_layers=4,
        n_heads=8,
        n_kv_heads=2,
        head_dim=32,
        ffn_dim=896,
        max_seq_len=512,
        num_experts=8,
        top_k=2,
    ),
    "46.7B": ModelArgs(
        vocab_size=32000,
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        head_dim=128,
        ffn_dim=14336,
        max_seq_len=32768,
    ),
}


def get_train_spec() -> TrainSpec:
    """Everything the runtime needs to build, parallelize and train this model."""
    return TrainSpec(
        name="mixtral_8x7b",
        model_cls=Transformer,
        model_args=mixtral_8x7b_configs,
        parallelize_fn=parallelize_mixtral,
        pipelining_fn=pipeline_mixtral,
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_cross_entropy_loss,
        state_dict_adapter=MixtralStateDictAdapter,
    )


register_train_spec(get_train_spec())
