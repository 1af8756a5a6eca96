"""TinyLlama/TinyLlama-1.1B-Chat-v1.0: model package for the model-scaffolder runtime.

Flavors: ``debugmodel`` (small dimensions, the same features) and ``1.1B`` (the
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

from .infra.parallelize import parallelize_llama
from .infra.pipeline import pipeline_llama
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import LlamaStateDictAdapter

__all__ = [
    "LlamaStateDictAdapter",
    "ModelArgs",
    "Transformer",
    "get_train_spec",
    "tinyllama_1_1b_chat_v1_0_configs",
]

tinyllama_1_1b_chat_v1_0_configs = {
    "debugmodel": ModelArgs(
        vocab_size=2048,
        dim=256,
        n_layers=4,
        n_heads=16,
        n_kv_heads=2,
        head_dim=16,
        ffn_dim=704,
        max_seq_len=512,
    ),
    "1.1B": ModelArgs(
        vocab_size=32000,
        dim=2048,
        n_layers=22,
        n_heads=32,
        n_kv_heads=4,
        head_dim=64,
        ffn_dim=5632,
        max_seq_len=2048,
    ),
}


def get_train_spec() -> TrainSpec:
    """Everything the runtime needs to build, parallelize and train this model."""
    return TrainSpec(
        name="tinyllama_1_1b_chat_v1_0",
        model_cls=Transformer,
        model_args=tinyllama_1_1b_chat_v1_0_configs,
        parallelize_fn=parallelize_llama,
        pipelining_fn=pipeline_llama,
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_cross_entropy_loss,
        state_dict_adapter=LlamaStateDictAdapter,
    )


register_train_spec(get_train_spec())
