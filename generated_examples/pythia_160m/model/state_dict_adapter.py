"""State dict mapping between this model and transformers' GPTNeoXForCausalLM.

- Rotary layout: the model rotates q/k (the first rotary channels of each head) in transformers'
  half-split layout, so the query and key rows of ``query_key_value`` load as they are; no per-head
  permutation.
- Untied embeddings: ``embed_out.weight`` and ``gpt_neox.embed_in.weight`` are separate tensors.
- Non-persistent buffers (the rope cache here, ``rotary_emb.inv_freq`` there) are in neither state
  dict.
- Fused tensors: the checkpoint's ``attention.query_key_value`` holds, head after head, that head's
  query, key and value rows (its output features unflatten to heads, then q/k/v, then head_dim). The
  model keeps separate projections, so tensor parallelism shards each of them whole: ``from_hf``
  splits the fused tensors and ``to_hf`` interleaves them again.
- Other names: ``from_hf`` also reads ``lm_head.weight`` as ``embed_out.weight``, the name some
  files use; ``to_hf`` writes the checkpoint's own.
- Non-parameter buffers some checkpoints carry (``attention.bias``, ``attention.masked_bias``,
  ``attention.rotary_emb.inv_freq``) are skipped by ``from_hf``.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from runtime.protocols import StateDictAdapter

# transformers key -> this model's key; "{}" is the layer number.
FROM_HF: dict[str, str] = {
    "gpt_neox.embed_in.weight": "tok_embeddings.weight",
    "gpt_neox.layers.{}.input_layernorm.weight": "layers.{}.attention_norm.weight",
    "gpt_neox.layers.{}.input_layernorm.bias": "layers.{}.attention_norm.bias",
    "gpt_neox.layers.{}.attention.dense.weight": "layers.{}.attention.wo.weight",
    "gpt_neox.layers.{}.attention.dense.bias": "layers.{}.attention.wo.bias",
    "gpt_neox.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
    "gpt_neox.layers.{}.post_attention_layernorm.bias": "layers.{}.ffn_norm.bias",
    "gpt_neox.layers.{}.mlp.dense_h_to_4h.weight": "layers.{}.feed_forward.w1.weight",
    "gpt_neox.layers.{}.mlp.dense_4h_to_h.weight": "layers.{}.feed_forward.w2.weight",
    "gpt_neox.layers.{}.mlp.dense_h_to_4h.bias": "layers.{}.feed_forward.w1.bias",
    "gpt_neox.layers.{}.mlp.dense_4h_to_h.bias": "layers.{}.feed_forward.w2.bias",
    "gpt_neox.final_layer_norm.weight": "norm.weight",
    "gpt_neox.final_layer_norm.bias": "norm.bias",
    "embed_out.weight": "output.weight",
}
TO_HF: dict[str, str] = {ours: theirs for theirs, ours in FROM_HF.items()}
# transformers' fused key -> this model's keys, in the order the checkpoint holds them.
FUSED_FROM_HF: dict[str, tuple[str, ...]] = {
    "gpt_neox.layers.{}.attention.query_key_value.weight": (
        "layers.{}.attention.wq.weight",
        "layers.{}.attention.wk.weight",
        "layers.{}.attention.wv.weight",
    ),
    "gpt_neox.layers.{}.attention.query_key_value.bias": (
        "layers.{}.attention.wq.bias",
        "layers.{}.attention.wk.bias",
        "layers.{}.attention.wv.bias",
    ),
}
# This model's key -> (transformers' fused key, its place in the fused tensor).
TO_FUSED: dict[str, tuple[str, int]] = {
    ours: (theirs, place)
    for theirs, parts in FUSED_FROM_HF.items()
    for place, ours in enumerate(parts)
}
# Older checkpoints' key -> today's.
LEGACY_NAMES: dict[str, str] = {
    "lm_head.weight": "embed_out.weight",
}
# Non-parameter buffers some checkpoints carry.
BUFFERS = {
    "gpt_neox.layers.{}.attention.bias",
    "gpt_neox.layers.{}.attention.masked_bias",
    "gpt_neox.layers.{}.attention.rotary_emb.inv_freq",
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


def split_qkv(fused: torch.Tensor, n_heads: int) -> tuple[torch.Tensor, ...]:
    """q, k, v out of a per-head fused ``[heads * 3 * head_dim, ...]`` weight or bias."""
    per_head = fused.unflatten(0, (n_heads, 3, -1))
    return tuple(per_head[:, part].flatten(0, 1) for part in range(3))


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of :func:`split_qkv`: head after head, its q, k and v rows."""
    parts = [t.unflatten(0, (n_heads, -1)) for t in (q, k, v)]
    return torch.stack(parts, dim=1).flatten(0, 2)


class GptNeoxStateDictAdapter(StateDictAdapter):
    """Converts state dicts to and from transformers' GPTNeoXForCausalLM layout.

    Tensors are renamed, split or concatenated exactly, so a round trip is bit-identical.
    """

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
            hf_state_dict[fused] = fuse_qkv(parts[0], parts[1], parts[2], self.model_args.n_heads)
        return hf_state_dict

    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        state_dict = {}
        for key, value in hf_state_dict.items():
            key = LEGACY_NAMES.get(key, key)
            template, layer = _template(key)
            if template in BUFFERS:
                continue
            if template in FUSED_FROM_HF:
                parts = split_qkv(value, self.model_args.n_heads)
                for name, part in zip(FUSED_FROM_HF[template], parts, strict=True):
                    state_dict[name.format(layer)] = part
                continue
            state_dict[_rename(key, FROM_HF)] = value
        return state_dict
