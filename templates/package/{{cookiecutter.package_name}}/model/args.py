{%- set s = cookiecutter.spec -%}
{%- set v = cookiecutter.views.args -%}
"""Model arguments for {{ cookiecutter.display_name }} ({{ s.hf_architecture }}).

Defaults are the full-size model read from its config.json. ``ModelArgs.from_hf`` maps the
transformers field names onto these; ``to_hf`` maps them back.
"""

from __future__ import annotations
{% for line in v.imports %}
{{ line }}
{%- endfor %}
from dataclasses import dataclass
from typing import Any

from torch import nn

from runtime.protocols import BaseModelArgs

# Features fixed by this package's code. A config.json that differs in any of them describes a
# different architecture: regenerate the package instead of loading it here.
ARCHITECTURE: dict[str, Any] = {
{%- for row in v.fixed %}
{%- for line in row.doc %}
    # {{ line }}
{%- endfor %}
    {{ row.key | py }}: {{ row.value | py }},
{%- endfor %}
}


@dataclass
class ModelArgs(BaseModelArgs):
    """Dimensions of the model; each comment names the config.json field."""
{% for field in v.fields %}
{%- for line in field.doc %}
    # {{ line }}
{%- endfor %}
    {{ field.name }}: {{ field.type }} = {{ field.value | py }}  # {{ field.comment }}
{%- endfor %}
{%- for property in v.properties %}

    @property
    def {{ property.name }}(self) -> int:
        """{{ property.doc }}"""
        return {{ property.expr }}
{%- endfor %}
{%- for part in v.class_parts %}

{% include 'parts/args/' ~ part ~ '.py.j2' %}
{%- endfor %}

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> ModelArgs:
        """Read a transformers config.json dict of this architecture, at any size.

{% filter prose(indent=8) %}
{{ v.from_hf_doc | join("\n") }}
{% endfilter %}
        """
        check_architecture(config)
{%- for line in v.from_hf_setup %}
        {{ line }}
{%- endfor %}
        return cls(
{%- for field in v.fields if field.read %}
            {{ field.name }}={{ field.read }},
{%- endfor %}
        )

    def to_hf(self) -> dict[str, Any]:
        """The transformers config.json dict ({{ s.hf_config_class }}) for these args."""
        return {
            "architectures": [{{ s.hf_architecture | py }}],
{%- for entry in v.to_hf %}
{%- for line in entry.doc %}
            # {{ line }}
{%- endfor %}
            {{ entry.key | py }}: {{ entry.value }},
{%- endfor %}
        }

    def update_from_config(self, job_config: Any, **kwargs: Any) -> None:
{%- if v.seq_len_unbounded %}
        """Nothing to check: dynamic NTK RoPE stretches past max_position_embeddings."""
{%- else %}
        """Check the training sequence length against the model's positions."""
        seq_len = job_config.training.seq_len
        if seq_len > self.max_seq_len:
            raise ValueError(
                f"training.seq_len ({seq_len}) exceeds max_position_embeddings "
                f"({self.max_seq_len}) of this model"
            )
{%- endif %}

    def get_nparams_and_flops(self, model: nn.Module, seq_len: int) -> tuple[int, int]:
        """Parameter count and training FLOPs per token.

        FLOPs follow torchtitan: 6 x (matmul parameters) + 6 x layers x heads x 2 x head_dim x
        seq_len for attention scores and values.
        """
        nparams = sum(p.numel() for p in model.parameters())
{%- for line in v.matmul_params %}
        {{ line }}
{%- endfor %}
        attention_flops = {{ v.attention_flops }}
        return nparams, 6 * matmul_params + attention_flops


def check_architecture(config: dict[str, Any]) -> None:
    """Refuse a config.json whose features differ from the ones this package implements."""
{%- for line in v.rope_setup %}
    {{ line }}
{%- endfor %}
    found = {
{%- for row in v.fixed %}
{%- for line in row.found_doc %}
        # {{ line }}
{%- endfor %}
        {{ row.key | py }}: {{ row.found }},
{%- endfor %}
    }
    for field, expected in ARCHITECTURE.items():
        if found[field] != expected:
            raise ValueError(
                f"config field {field}={found[field]!r} differs from this package's "
                f"{expected!r}; run `scaffold regenerate` with the new config"
            )
{%- for part in v.helpers %}
{% include 'parts/args/' ~ part ~ '.py.j2' %}
{%- endfor %}
