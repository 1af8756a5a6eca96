"""deepseek_v3: model package for the model-scaffolder runtime.

Flavors: ``debugmodel`` (small dimensions, the same features) and ``671B`` (the
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

from .infra.parallelize import parallelize_deepseek_v3
from .infra.pipeline import pipeline_deepseek_v3
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import DeepseekV3StateDictAdapter

__all__ = [
    "DeepseekV3StateDictAdapter",
    "ModelArgs",
    "Transformer",
    "get_train_spec",
    "deepseek_v3_configs",
]

deepseek_v3_configs = {
    "debugmodel": ModelArgs(
        vocab_size=2048,
        dim=256,
        n_layers=4,
        n_heads=8,
        ffn_dim=672,
        max_seq_len=512,
        num_experts=8,
        top_k=4,
        moe_ffn_dim=64,
        n_shared_experts=1,
        n_group=4,
        topk_group=2,
        first_k_dense_replace=1,
        kv_lora_rank=32,
        qk_nope_head_dim=16,
        qk_rope_head_dim=8,
        v_head_dim=24,
        q_lora_rank=48,
    ),
    "671B": ModelArgs(
        vocab_size=129280,
        dim=7168,
        n_layers=61,
        n_heads=128,
        ffn_dim=18432,
        max_seq_len=163840,
    ),
}


def get_train_spec() -> TrainSpec:
    """Everything the runtime needs to build, parallelize and train this model."""
    return TrainSpec(
        name="deepseek_v3",
        model_cls=Transformer,
        model_args=deepseek_v3_configs,
        parallelize_fn=parallelize_deepseek_v3,
        pipelining_fn=pipeline_deepseek_v3,
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_cross_entropy_loss,
        state_dict_adapter=DeepseekV3StateDictAdapter,
    )


register_train_spec(get_train_spec())
