{%- set s = cookiecutter.spec -%}
{#- Norm layers by features.norm: torch's RMSNorm (default), LayerNorm with bias, or the
    (1 + weight) RMSNorm defined in parts/model/norm_rmsnorm_1p.py.j2. -#}
{%- set norm = s.features.get("norm", "rmsnorm") -%}
{%- set norm_class = {"rmsnorm": "nn.RMSNorm", "rmsnorm_1p": "RMSNorm", "layernorm": "nn.LayerNorm"}[norm] -%}
{%- set norm_name = {"rmsnorm": "RMSNorm", "rmsnorm_1p": "RMSNorm", "layernorm": "LayerNorm"}[norm] -%}
"""{{ cookiecutter.display_name }} as plain, single-device PyTorch.

{% if s.parts.overview is defined -%}
{% include 'parts/model/' ~ s.parts.overview ~ '.py.j2' %}
{%- else -%}
Architecture ({{ s.hf_architecture }}): {{ s.n_layers }} {{ "post-norm" if s.features.get("norm_placement") == "post" else "pre-norm" }} blocks of
{% if s.uses_gqa %}grouped-query attention ({{ s.n_heads }} query heads, {{ s.n_kv_heads }} key/value heads){% else %}multi-head attention ({{ s.n_heads }} heads){% endif %}
and a SwiGLU MLP, RMSNorm, {{ s.rope.type }} RoPE, {% if s.tie_word_embeddings %}tied{% else %}untied{% endif %} input/output embeddings.
{%- endif %}
Parallelism is applied from ``infra/``; nothing here knows about it.
"""

from __future__ import annotations
{% if (s.rope and s.rope.type == "llama3") or s.hidden_act == "gelu_new" %}
import math
{% endif %}
import torch
import torch.nn.functional as F
from torch import nn

from .args import ModelArgs

{% if norm == "rmsnorm_1p" %}
{% include 'parts/model/norm_rmsnorm_1p.py.j2' %}

{% endif %}
{%- if s.parts.rope is defined %}
{% include 'parts/model/' ~ s.parts.rope ~ '.py.j2' %}
{%- endif %}


{% include 'parts/model/' ~ s.parts.attention ~ '.py.j2' %}


{% include 'parts/model/' ~ s.parts.feed_forward ~ '.py.j2' %}


{% include 'parts/model/' ~ s.parts.block ~ '.py.j2' %}


{% include 'parts/model/' ~ s.parts.transformer ~ '.py.j2' %}
