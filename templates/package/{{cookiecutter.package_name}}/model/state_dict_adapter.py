{%- set s = cookiecutter.spec -%}
{#- Families whose checkpoint layout differs from Llama's (GPT-NeoX, GPT-2) render their own. -#}
{%- if s.parts.adapter is defined -%}
{% include 'parts/adapter/' ~ s.parts.adapter ~ '.py.j2' %}
{%- else -%}
{%- set fused = s.features.get("fused_checkpoint") -%}
"""State dict mapping between this model and transformers' {{ s.hf_architecture }}.

- Rotary layout: the model rotates q/k in transformers' half-split layout, so ``q_proj`` and
  ``k_proj`` load as they are; no per-head permutation.
{%- if s.tie_word_embeddings %}
- Tied embeddings (tie_word_embeddings): transformers' checkpoints store only
  ``model.embed_tokens.weight``; ``output.weight`` is the same tensor.
{%- else %}
- Untied embeddings: ``lm_head.weight`` and ``model.embed_tokens.weight`` are separate tensors.
{%- endif %}
- Non-persistent buffers (the rope cache here, ``rotary_emb.inv_freq`` there) are in neither
  state dict.
{%- if fused %}
- Fused tensors: the checkpoint stacks q, k and v in ``self_attn.qkv_proj`` and gate and up in
  ``mlp.gate_up_proj`` (along the output features, in that order). The model keeps separate
  projections, so tensor parallelism shards each of them whole: ``from_hf`` splits the fused
  tensors (into views) and ``to_hf`` concatenates them again.
{%- endif %}
"""

from __future__ import annotations

import re
from typing import Any
{% if fused %}
import torch
{% endif %}
from runtime.protocols import StateDictAdapter

from .args import ModelArgs

# transformers key -> this model's key; "{}" is the layer number.
FROM_HF: dict[str, str] = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
{%- if s.features.get("norm_placement") != "post" %}
    "model.layers.{}.input_layernorm.weight": "layers.{}.attention_norm.weight",
{%- endif %}
{%- if not fused %}
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attention.wq.weight",
    "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attention.wk.weight",
    "model.layers.{}.self_attn.v_proj.weight": "layers.{}.attention.wv.weight",
{%- endif %}
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
{%- if s.features.get("qk_norm") %}
    "model.layers.{}.self_attn.q_norm.weight": "layers.{}.attention.q_norm.weight",
    "model.layers.{}.self_attn.k_norm.weight": "layers.{}.attention.k_norm.weight",
{%- endif %}
{%- if s.attention_bias %}
    "model.layers.{}.self_attn.q_proj.bias": "layers.{}.attention.wq.bias",
    "model.layers.{}.self_attn.k_proj.bias": "layers.{}.attention.wk.bias",
    "model.layers.{}.self_attn.v_proj.bias": "layers.{}.attention.wv.bias",
    "model.layers.{}.self_attn.o_proj.bias": "layers.{}.attention.wo.bias",
{%- elif s.features.get("qkv_bias") %}
    "model.layers.{}.self_attn.q_proj.bias": "layers.{}.attention.wq.bias",
    "model.layers.{}.self_attn.k_proj.bias": "layers.{}.attention.wk.bias",
    "model.layers.{}.self_attn.v_proj.bias": "layers.{}.attention.wv.bias",
{%- endif %}
{%- if s.features.get("sandwich_norm") %}
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.post_attention_norm.weight",
    "model.layers.{}.pre_feedforward_layernorm.weight": "layers.{}.ffn_norm.weight",
    "model.layers.{}.post_feedforward_layernorm.weight": "layers.{}.post_ffn_norm.weight",
{%- elif s.features.get("norm_placement") == "post" %}
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.post_attention_norm.weight",
    "model.layers.{}.post_feedforward_layernorm.weight": "layers.{}.post_ffn_norm.weight",
{%- else %}
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
{%- endif %}
{%- if s.parts.feed_forward == "feed_forward_gelu" %}
    "model.layers.{}.mlp.c_fc.weight": "layers.{}.feed_forward.w1.weight",
    "model.layers.{}.mlp.c_proj.weight": "layers.{}.feed_forward.w2.weight",
{%- if s.mlp_bias %}
    "model.layers.{}.mlp.c_fc.bias": "layers.{}.feed_forward.w1.bias",
    "model.layers.{}.mlp.c_proj.bias": "layers.{}.feed_forward.w2.bias",
{%- endif %}
{%- else %}
{%- if not fused %}
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w1.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w3.weight",
{%- endif %}
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
{%- if s.mlp_bias %}
    "model.layers.{}.mlp.gate_proj.bias": "layers.{}.feed_forward.w1.bias",
    "model.layers.{}.mlp.up_proj.bias": "layers.{}.feed_forward.w3.bias",
    "model.layers.{}.mlp.down_proj.bias": "layers.{}.feed_forward.w2.bias",
{%- endif %}
{%- endif %}
{%- if s.features.get("norm") == "layernorm" %}
    # LayerNorm biases.
    "model.layers.{}.input_layernorm.bias": "layers.{}.attention_norm.bias",
    "model.layers.{}.post_attention_layernorm.bias": "layers.{}.ffn_norm.bias",
    "model.norm.bias": "norm.bias",
{%- endif %}
    "model.norm.weight": "norm.weight",
{%- if not s.tie_word_embeddings %}
    "lm_head.weight": "output.weight",
{%- endif %}
}
TO_HF: dict[str, str] = {ours: theirs for theirs, ours in FROM_HF.items()}
{%- if fused %}
# transformers' fused key -> this model's keys, in the order they are stacked.
FUSED_FROM_HF: dict[str, tuple[str, ...]] = {
    "model.layers.{}.self_attn.qkv_proj.weight": (
        "layers.{}.attention.wq.weight",
        "layers.{}.attention.wk.weight",
        "layers.{}.attention.wv.weight",
    ),
    "model.layers.{}.mlp.gate_up_proj.weight": (
        "layers.{}.feed_forward.w1.weight",
        "layers.{}.feed_forward.w3.weight",
    ),
}
# This model's key -> (transformers' fused key, its place in the stack).
TO_FUSED: dict[str, tuple[str, int]] = {
    ours: (theirs, place)
    for theirs, parts in FUSED_FROM_HF.items()
    for place, ours in enumerate(parts)
}
{%- endif %}

_LAYER_NUMBER = re.compile(r"\.(\d+)\.")


def _rename(key: str, mapping: dict[str, str]) -> str:
    match = _LAYER_NUMBER.search(key)
    if match is None:
        template, layer = key, None
    else:
        template = key[: match.start()] + ".{}." + key[match.end() :]
        layer = match.group(1)
    if template not in mapping:
        raise KeyError(f"no mapping for state dict key {key!r}")
    return mapping[template].format(layer) if layer is not None else mapping[template]
{%- if fused %}


def _layer_template(key: str) -> tuple[str, str | None]:
    """``key`` with its layer number replaced by "{}", and the layer number."""
    match = _LAYER_NUMBER.search(key)
    if match is None:
        return key, None
    return key[: match.start()] + ".{}." + key[match.end() :], match.group(1)
{%- endif %}


class {{ cookiecutter.class_prefix }}StateDictAdapter(StateDictAdapter):
    """Converts state dicts to and from transformers' {{ s.hf_architecture }} layout.

    Tensors pass through untouched (plain tensors or DTensors), so a round trip is bit-identical.
    """

    def __init__(self, model_args: ModelArgs, hf_assets_path: Any = None) -> None:
        super().__init__(model_args, hf_assets_path)
{%- if fused %}
        q_dim = model_args.n_heads * model_args.head_dim
        kv_dim = model_args.n_kv_heads * model_args.head_dim
        # Output features of each stacked part, in FUSED_FROM_HF's order.
        self.split_sizes = {
            "model.layers.{}.self_attn.qkv_proj.weight": (q_dim, kv_dim, kv_dim),
            "model.layers.{}.mlp.gate_up_proj.weight": (model_args.ffn_dim, model_args.ffn_dim),
        }
{%- endif %}

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        hf_state_dict = {}
{%- if fused %}
        stacks: dict[str, dict[int, Any]] = {}  # fused key -> {place in the stack: tensor}
{%- endif %}
        for key, value in state_dict.items():
{%- if s.tie_word_embeddings %}
            if key == "output.weight":
                continue  # tied to tok_embeddings.weight; transformers re-ties it on load
{%- endif %}
{%- if fused %}
            template, layer = _layer_template(key)
            if template in TO_FUSED:
                fused_key, place = TO_FUSED[template]
                stacks.setdefault(fused_key.format(layer), {})[place] = value
                continue
{%- endif %}
            hf_state_dict[_rename(key, TO_HF)] = value
{%- if fused %}
        for fused_key, parts in stacks.items():
            hf_state_dict[fused_key] = torch.cat([parts[place] for place in sorted(parts)])
{%- endif %}
        return hf_state_dict

    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        state_dict = {}
        for key, value in hf_state_dict.items():
{%- if s.tie_word_embeddings %}
            if key == "lm_head.weight":
                continue  # the same tensor as model.embed_tokens.weight
{%- endif %}
{%- if fused %}
            template, layer = _layer_template(key)
            if template in FUSED_FROM_HF:
                parts = value.split(self.split_sizes[template])
                for name, part in zip(FUSED_FROM_HF[template], parts, strict=True):
                    state_dict[name.format(layer)] = part
                continue
{%- endif %}
            state_dict[_rename(key, FROM_HF)] = value
{%- if s.tie_word_embeddings %}
        state_dict["output.weight"] = state_dict["tok_embeddings.weight"]
{%- endif %}
        return state_dict
{%- endif %}
