"""qwen3_0_6b: model package for the model-scaffolder runtime.

Flavors: ``debugmodel`` (small dimensions, the same features) and ``596M`` (the
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

from .infra.parallelize import parallelize_qwen3
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import Qwen3StateDictAdapter

__all__ = [
    "Qwen3StateDictAdapter",
    "ModelArgs",
    "Transformer",
    "get_train_spec",
    "qwen3_0_6b_configs",
]

qwen3_0_6b_configs = {
    "debugmodel": ModelArgs(
        vocab_size=2048,
        dim=256,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        head_dim=80,
        ffn_dim=768,
        max_seq_len=512,
    ),
    "596M": ModelArgs(
        vocab_size=151936,
        dim=1024,
        n_layers=28,
        n_heads=16,
        n_kv_heads=8,
        head_dim=128,
        ffn_dim=3072,
        max_seq_len=40960,
    ),
}


def get_train_spec() -> TrainSpec:
    """Everything the runtime needs to build, parallelize and train this model."""
    return TrainSpec(
        name="qwen3_0_6b",
        model_cls=Transformer,
        model_args=qwen3_0_6b_configs,
        parallelize_fn=parallelize_qwen3,
        # Tied embeddings (tie_word_embeddings): the first and last pipeline stages would share
        # one weight, so this model trains without pipeline parallelism.
        pipelining_fn=None,
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_cross_entropy_loss,
        state_dict_adapter=Qwen3StateDictAdapter,
    )


register_train_spec(get_train_spec())
