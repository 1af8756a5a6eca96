"""qwen3_30b_a3b: model package for the model-scaffolder runtime.

Flavors: ``debugmodel`` (small dimensions, the same features) and ``30.5B`` (the
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

from .infra.parallelize import parallelize_qwen3_moe
from .infra.pipeline import pipeline_qwen3_moe
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import Qwen3MoeStateDictAdapter

__all__ = [
    "Qwen3MoeStateDictAdapter",
    "ModelArgs",
    "Transformer",
    "get_train_spec",
    "qwen3_30b_a3b_configs",
]

qwen3_30b_a3b_configs = {
    "debugmodel": ModelArgs(
        vocab_size=2048,
        dim=256,
        n_layers=4,
        n_heads=16,
        n_kv_heads=2,
        head_dim=32,
        ffn_dim=768,
        max_seq_len=512,
        num_experts=8,
        top_k=4,
        moe_ffn_dim=96,
    ),
    "30.5B": ModelArgs(
        vocab_size=151936,
        dim=2048,
        n_layers=48,
        n_heads=32,
        n_kv_heads=4,
        head_dim=128,
        ffn_dim=6144,
        max_seq_len=40960,
    ),
}


def get_train_spec() -> TrainSpec:
    """Everything the runtime needs to build, parallelize and train this model."""
    return TrainSpec(
        name="qwen3_30b_a3b",
        model_cls=Transformer,
        model_args=qwen3_30b_a3b_configs,
        parallelize_fn=parallelize_qwen3_moe,
        pipelining_fn=pipeline_qwen3_moe,
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_cross_entropy_loss,
        state_dict_adapter=Qwen3MoeStateDictAdapter,
    )


register_train_spec(get_train_spec())
