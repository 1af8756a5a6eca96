{%- set s = cookiecutter.spec -%}
{%- set m = cookiecutter.views.model -%}
"""{% filter prose %}
{{ cookiecutter.display_name }} as plain, single-device PyTorch.

{{ m.overview | join("\n\n") }}

Parallelism is applied from ``infra/``; nothing here knows about it.
{% endfilter %}
"""

from __future__ import annotations

{% for module in m.stdlib_imports -%}
import {{ module }}
{% endfor -%}
import torch
import torch.nn.functional as F
from torch import nn

{% for line in m.local_imports -%}
{{ line }}
{% endfor -%}
{% for part in m.parts %}


{% include 'parts/model/' ~ part ~ '.py.j2' %}
{%- endfor %}
