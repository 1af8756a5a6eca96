"""gpt_oss_20b: model package for the model-scaffolder runtime.

Flavors: ``debugmodel`` (small dimensions, the same features) and ``20.9B`` (the
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

from .infra.parallelize import parallelize_gpt_oss
from .infra.pipeline import pipeline_gpt_oss
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import GptOssStateDictAdapter

__all__ = [
    "GptOssStateDictAdapter",
    "ModelArgs",
    "Transformer",
    "get_train_spec",
    "gpt_oss_20b_configs",
]

gpt_oss_20b_configs = {
    "debugmodel": ModelArgs(
        vocab_size=2048,
        dim=256,
        n_layers=4,
        n_heads=16,
        n_kv_heads=2,
        head_dim=32,
        ffn_dim=256,
        max_seq_len=512,
        pad_token_id=0,
        num_experts=8,
        top_k=4,
        sliding_window=16,
        sliding_window_pattern=2,
        swiglu_limit=0.25,  # config.json: 7.0; the tests' random weights reach this clamp
    ),
    "20.9B": ModelArgs(
        vocab_size=201088,
        dim=2880,
        n_layers=24,
        n_heads=64,
        n_kv_heads=8,
        head_dim=64,
        ffn_dim=2880,
        max_seq_len=131072,
    ),
}


def get_train_spec() -> TrainSpec:
    """Everything the runtime needs to build, parallelize and train this model."""
    return TrainSpec(
        name="gpt_oss_20b",
        model_cls=Transformer,
        model_args=gpt_oss_20b_configs,
        parallelize_fn=parallelize_gpt_oss,
        pipelining_fn=pipeline_gpt_oss,
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_cross_entropy_loss,
        state_dict_adapter=GptOssStateDictAdapter,
    )


register_train_spec(get_train_spec())
