"""gemma2_9b: model package for the model-scaffolder runtime.

Flavors: ``debugmodel`` (small dimensions, the same features) and ``9.2B`` (the
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

from .infra.parallelize import parallelize_gemma2
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import Gemma2StateDictAdapter

__all__ = [
    "Gemma2StateDictAdapter",
    "ModelArgs",
    "Transformer",
    "get_train_spec",
    "gemma2_9b_configs",
]

gemma2_9b_configs = {
    "debugmodel": ModelArgs(
        vocab_size=2048,
        dim=256,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        head_dim=80,
        ffn_dim=1024,
        max_seq_len=512,
        sliding_window=16,
        sliding_window_pattern=2,
    ),
    "9.2B": ModelArgs(
        vocab_size=256000,
        dim=3584,
        n_layers=42,
        n_heads=16,
        n_kv_heads=8,
        head_dim=256,
        ffn_dim=14336,
        max_seq_len=8192,
    ),
}


def get_train_spec() -> TrainSpec:
    """Everything the runtime needs to build, parallelize and train this model."""
    return TrainSpec(
        name="gemma2_9b",
        model_cls=Transformer,
        model_args=gemma2_9b_configs,
        parallelize_fn=parallelize_gemma2,
        # Tied embeddings (tie_word_embeddings): the first and last pipeline stages would share
        # one weight, so this model trains without pipeline parallelism.
        pipelining_fn=None,
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_cross_entropy_loss,
        state_dict_adapter=Gemma2StateDictAdapter,
    )


register_train_spec(get_train_spec())
