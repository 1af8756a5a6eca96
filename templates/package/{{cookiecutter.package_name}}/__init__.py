{%- set s = cookiecutter.spec -%}
{%- set v = cookiecutter.views.infra -%}
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
{%- if v.has_pipeline %}
from .infra.pipeline import pipeline_{{ s.family }}
{%- endif %}
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
{%- for name, value, comment in v.debug_args %}
        {{ name }}={{ value | py }},{% if comment %}  # {{ comment }}{% endif %}
{%- endfor %}
    ),
    {{ s.size_name | py }}: ModelArgs(
{%- for name, value in v.full_args %}
        {{ name }}={{ value | py }},
{%- endfor %}
    ),
}


def get_train_spec() -> TrainSpec:
    """Everything the runtime needs to build, parallelize and train this model."""
    return TrainSpec(
        name={{ cookiecutter.package_name | py }},
        model_cls=Transformer,
        model_args={{ cookiecutter.package_name }}_configs,
        parallelize_fn=parallelize_{{ s.family }},
{%- if v.has_pipeline %}
        pipelining_fn=pipeline_{{ s.family }},
{%- else %}
        # Tied embeddings (tie_word_embeddings): the first and last pipeline stages would share
        # one weight, so this model trains without pipeline parallelism.
        pipelining_fn=None,
{%- endif %}
        build_optimizers_fn=build_optimizers,
        build_lr_schedulers_fn=build_lr_schedulers,
        build_dataloader_fn=build_dataloader,
        build_tokenizer_fn=build_tokenizer,
        build_loss_fn=build_cross_entropy_loss,
        state_dict_adapter={{ cookiecutter.class_prefix }}StateDictAdapter,
    )


register_train_spec(get_train_spec())
