"""gpt2: model package for the model-scaffolder runtime.

Flavors: ``debugmodel`` (small dimensions, the same features) and ``124M`` (the
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

from .infra.parallelize import parallelize_gpt2
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import Gpt2StateDictAdapter

__all__ = [
    "Gpt2StateDictAdapter",
    "ModelArgs",
    "Transformer",
    "get_train_spec",
    "gpt2_configs",
]

gpt2_configs = {
    "debugmodel": ModelArgs(
        vocab_size=2048,
        dim=256,
        n_layers=4,
        n_heads=8,
        ffn_dim=1024,
        max_seq_len=512,
    ),
    "124M": ModelArgs(
        vocab_size=50257,
        dim=768,
        n_layers=12,
        n_heads=12,
        ffn_dim=3072,
        max_seq_len=1024,
    ),
}


def get_train_spec() -> TrainSpec:
    """Everything the runtime needs to build, parallelize and train this model."""
    return TrainSpec(
        name="gpt2",
        model_cls=Transformer,
        model_args=gpt2_configs,
        parallelize_fn=parallelize_gpt2,
        # Tied embeddings (tie_word_embeddings): the first and last pipeline stages would share
        # one weight, so this model trains without pipeline parallelism.
        pipelining_fn=None,
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_cross_entropy_loss,
        state_dict_adapter=Gpt2StateDictAdapter,
    )


register_train_spec(get_train_spec())
