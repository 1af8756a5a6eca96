{%- set s = cookiecutter.spec -%}
{%- set d = s.debug -%}
"""{{ cookiecutter.display_name }}: model package for the model-scaffolder runtime.

Flavors: ``debugmodel`` (small dimensions, the same features) and ``{{ s.size_name }}`` (the
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

from .infra.parallelize import parallelize_{{ s.family }}
from .infra.pipeline import pipeline_{{ s.family }}
from .model.args import ModelArgs
from .model.model import Transformer
from .model.state_dict_adapter import {{ cookiecutter.class_prefix }}StateDictAdapter

__all__ = [
    "{{ cookiecutter.class_prefix }}StateDictAdapter",
    "ModelArgs",
    "Transformer",
    "get_train_spec",
    "{{ cookiecutter.package_name }}_configs",
]

{{ cookiecutter.package_name }}_configs = {
    "debugmodel": ModelArgs(
        vocab_size={{ d.vocab_size | py }},
        dim={{ d.dim | py }},
        n_layers={{ d.n_layers | py }},
        n_heads={{ d.n_heads | py }},
{%- if not s.features.get("derived_head_dims") %}
        n_kv_heads={{ d.n_kv_heads | py }},
        head_dim={{ d.head_dim | py }},
{%- endif %}
        ffn_dim={{ d.ffn_dim | py }},
        max_seq_len={{ d.max_seq_len | py }},
{%- if "attention_dropout" in d %}
        attention_dropout={{ d.attention_dropout | py }},  # config.json: {{ s.features.attention_dropout | py }}
{%- endif %}
{%- if "sliding_window" in d %}
        sliding_window={{ d.sliding_window | py }},
{%- endif %}
{%- if "max_window_layers" in d %}
        max_window_layers={{ d.max_window_layers | py }},
{%- endif %}
{%- if "rope_original_max_seq_len" in d %}
        rope_original_max_seq_len={{ d.rope_original_max_seq_len | py }},
        rope_short_factor={{ d.rope_short_factor | py }},
        rope_long_factor={{ d.rope_long_factor | py }},
{%- endif %}
{%- if "sliding_window_pattern" in d %}
        sliding_window_pattern={{ d.sliding_window_pattern | py }},
{%- endif %}
{%- if "pad_token_id" in d %}
        pad_token_id={{ d.pad_token_id | py }},
{%- endif %}
    ),
    {{ s.size_name | py }}: ModelArgs(
        vocab_size={{ s.vocab_size | py }},
        dim={{ s.dim | py }},
        n_layers={{ s.n_layers | py }},
        n_heads={{ s.n_heads | py }},
{%- if not s.features.get("derived_head_dims") %}
        n_kv_heads={{ s.n_kv_heads | py }},
        head_dim={{ s.head_dim | py }},
{%- endif %}
        ffn_dim={{ s.ffn_dim | py }},
        max_seq_len={{ s.max_seq_len | py }},
    ),
}


def get_train_spec() -> TrainSpec:
    """Everything the runtime needs to build, parallelize and train this model."""
    return TrainSpec(
        name={{ cookiecutter.package_name | py }},
        model_cls=Transformer,
        model_args={{ cookiecutter.package_name }}_configs,
        parallelize_fn=parallelize_{{ s.family }},
        pipelining_fn=pipeline_{{ s.family }},
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_cross_entropy_loss,
        state_dict_adapter={{ cookiecutter.class_prefix }}StateDictAdapter,
    )


register_train_spec(get_train_spec())
