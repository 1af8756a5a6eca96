"""State dict mapping between this model and transformers' Phi3ForCausalLM.

- Rotary layout: the model rotates q/k in transformers' half-split layout, so the query and key rows
  of ``qkv_proj`` load as they are; no per-head permutation.
- Untied embeddings: ``lm_head.weight`` and ``model.embed_tokens.weight`` are separate tensors.
- Non-persistent buffers (the rope cache here, ``rotary_emb.inv_freq`` there) are in neither state
  dict.
- Fused tensors: the checkpoint stacks q, k and v in ``self_attn.qkv_proj`` and gate and up in
  ``mlp.gate_up_proj`` (along the output features, in that order). The model keeps separate
  projections, so tensor parallelism shards each of them whole: ``from_hf`` splits the fused tensors
  (into views) and ``to_hf`` concatenates them again.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from runtime.protocols import StateDictAdapter

from .args import ModelArgs

# transformers key -> this model's key; "{}" is the layer number.
FROM_HF: dict[str, str] = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.attention_norm.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}
TO_HF: dict[str, str] = {ours: theirs for theirs, ours in FROM_HF.items()}
# transformers' fused key -> this model's keys, in the order the checkpoint holds them.
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
# This model's key -> (transformers' fused key, its place in the fused tensor).
TO_FUSED: dict[str, tuple[str, int]] = {
    ours: (theirs, place)
    for theirs, parts in FUSED_FROM_HF.items()
    for place, ours in enumerate(parts)
}

_LAYER_NUMBER = re.compile(r"\.(\d+)\.")


def _template(key: str) -> tuple[str, str | None]:
    """``key`` with its layer number replaced by "{}", and the layer number."""
    match = _LAYER_NUMBER.search(key)
    if match is None:
        return key, None
    return key[: match.start()] + ".{}." + key[match.end() :], match.group(1)


def _rename(key: str, mapping: dict[str, str]) -> str:
    template, layer = _template(key)
    if template not in mapping:
        raise KeyError(f"no mapping for state dict key {key!r}")
    return mapping[template].format(layer) if layer is not None else mapping[template]


class Phi3StateDictAdapter(StateDictAdapter):
    """Converts state dicts to and from transformers' Phi3ForCausalLM layout.

    Tensors are renamed, split or concatenated exactly, so a round trip is bit-identical.
    """

    def __init__(self, model_args: ModelArgs, hf_assets_path: Any = None) -> None:
        super().__init__(model_args, hf_assets_path)
        q_dim = model_args.n_heads * model_args.head_dim
        kv_dim = model_args.n_kv_heads * model_args.head_dim
        # Output features of each stacked part, in FUSED_FROM_HF's order.
        self.split_sizes = {
            "model.layers.{}.self_attn.qkv_proj.weight": (q_dim, kv_dim, kv_dim),
            "model.layers.{}.mlp.gate_up_proj.weight": (model_args.ffn_dim, model_args.ffn_dim),
        }

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        hf_state_dict = {}
        stacks: dict[str, dict[int, Any]] = {}  # fused key -> {place in it: tensor}
        for key, value in state_dict.items():
            template, layer = _template(key)
            if template in TO_FUSED:
                fused, place = TO_FUSED[template]
                stacks.setdefault(fused.format(layer), {})[place] = value
                continue
            hf_state_dict[_rename(key, TO_HF)] = value
        for fused, parts in stacks.items():
            hf_state_dict[fused] = torch.cat([parts[place] for place in sorted(parts)])
        return hf_state_dict

    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        state_dict = {}
        for key, value in hf_state_dict.items():
            template, layer = _template(key)
            if template in FUSED_FROM_HF:
                parts = value.split(self.split_sizes[template])
                for name, part in zip(FUSED_FROM_HF[template], parts, strict=True):
                    state_dict[name.format(layer)] = part
                continue
            state_dict[_rename(key, FROM_HF)] = value
        return state_dict
