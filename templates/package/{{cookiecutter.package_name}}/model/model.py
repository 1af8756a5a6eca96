{%- set s = cookiecutter.spec -%}
"""{{ cookiecutter.display_name }} as plain, single-device PyTorch.

Architecture ({{ s.hf_architecture }}): {{ s.n_layers }} pre-norm blocks of
{% if s.uses_gqa %}grouped-query attention ({{ s.n_heads }} query heads, {{ s.n_kv_heads }} key/value heads){% else %}multi-head attention ({{ s.n_heads }} heads){% endif %}
and a SwiGLU MLP, RMSNorm, {{ s.rope.type }} RoPE, {% if s.tie_word_embeddings %}tied{% else %}untied{% endif %} input/output embeddings.
Parallelism is applied from ``infra/``; nothing here knows about it.
"""

from __future__ import annotations
{% if s.rope.type == "llama3" %}
import math
{% endif %}
import torch
import torch.nn.functional as F
from torch import nn

from .args import ModelArgs


{% include 'parts/model/' ~ s.parts.rope ~ '.py.j2' %}


{% include 'parts/model/' ~ s.parts.attention ~ '.py.j2' %}


{% include 'parts/model/' ~ s.parts.feed_forward ~ '.py.j2' %}


{% include 'parts/model/' ~ s.parts.block ~ '.py.j2' %}


{% include 'parts/model/' ~ s.parts.transformer ~ '.py.j2' %}
