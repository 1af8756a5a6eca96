"""phi_3_5_mini_instruct: model package for the model-scaffolder runtime.

Flavors: ``debugmodel`` (small dimensions, the same features) and ``3.8B`` (the
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

from .infra.parallelize import parallelize_phi3
from .infra.pipeline import pipeline_phi3
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import Phi3StateDictAdapter

__all__ = [
    "Phi3StateDictAdapter",
    "ModelArgs",
    "Transformer",
    "get_train_spec",
    "phi_3_5_mini_instruct_configs",
]

phi_3_5_mini_instruct_configs = {
    "debugmodel": ModelArgs(
        vocab_size=2048,
        dim=256,
        n_layers=4,
        n_heads=8,
        n_kv_heads=8,
        head_dim=32,
        ffn_dim=672,
        max_seq_len=512,
        pad_token_id=0,
        sliding_window=16,
        rope_original_max_seq_len=32,
        rope_short_factor=(
            1.0,
            1.0299999713897705,
            1.0499999523162842,
            1.0699999332427979,
            1.1599998474121094,
            1.339999794960022,
            1.8199998140335083,
            1.9099997282028198,
            2.0199997425079346,
            2.0199997425079346,
            2.0299997329711914,
            2.0299997329711914,
            2.0299997329711914,
            2.0899996757507324,
            2.5899994373321533,
            2.8399994373321533,
        ),
        rope_long_factor=(
            1.0800000429153442,
            1.340000033378601,
            1.6200000047683716,
            3.2300000190734863,
            9.09000015258789,
            24.46000099182129,
            30.840002059936523,
            42.320003509521484,
            50.45000457763672,
            58.21000289916992,
            62.62000274658203,
            63.1400032043457,
            63.970001220703125,
            64.08000183105469,
            64.4800033569336,
            64.83999633789062,
        ),
    ),
    "3.8B": ModelArgs(
        vocab_size=32064,
        dim=3072,
        n_layers=32,
        n_heads=32,
        n_kv_heads=32,
        head_dim=96,
        ffn_dim=8192,
        max_seq_len=131072,
    ),
}


def get_train_spec() -> TrainSpec:
    """Everything the runtime needs to build, parallelize and train this model."""
    return TrainSpec(
        name="phi_3_5_mini_instruct",
        model_cls=Transformer,
        model_args=phi_3_5_mini_instruct_configs,
        parallelize_fn=parallelize_phi3,
        pipelining_fn=pipeline_phi3,
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_cross_entropy_loss,
        state_dict_adapter=Phi3StateDictAdapter,
    )


register_train_spec(get_train_spec())
