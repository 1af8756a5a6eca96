"""State dict mapping between this model and transformers' GPTNeoXForCausalLM.

- Fused q/k/v: the checkpoint's ``attention.query_key_value`` stacks, head after head, that
  head's query, key and value rows (``[heads, 3, head_dim]`` along the output features). The
  model keeps ``wq``, ``wk``, ``wv`` apart so tensor parallelism shards whole heads of each:
  ``from_hf`` splits the fused weight and bias, ``to_hf`` interleaves them again.
- Rotary layout: transformers rotates the first rotary channels of each head in the half-split
  layout, as the model does, so no per-head permutation.
- Output projection: transformers 5 names it ``lm_head``; checkpoints saved by earlier versions
  name it ``embed_out``, which ``from_hf`` reads too.
- Buffers older checkpoints carry (``attention.bias``, ``attention.masked_bias``,
  ``attention.rotary_emb.inv_freq``) are not parameters: ``from_hf`` skips them.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from runtime.protocols import StateDictAdapter

from .args import ModelArgs

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
    "gpt_neox.layers.{}.mlp.dense_h_to_4h.bias": "layers.{}.feed_forward.w1.bias",
    "gpt_neox.layers.{}.mlp.dense_4h_to_h.weight": "layers.{}.feed_forward.w2.weight",
    "gpt_neox.layers.{}.mlp.dense_4h_to_h.bias": "layers.{}.feed_forward.w2.bias",
    "gpt_neox.final_layer_norm.weight": "norm.weight",
    "gpt_neox.final_layer_norm.bias": "norm.bias",
    "lm_head.weight": "output.weight",
}
TO_HF: dict[str, str] = {ours: theirs for theirs, ours in FROM_HF.items()}
# The fused q/k/v projection and its bias, and the parts it holds.
FUSED_QKV: dict[str, tuple[str, str, str]] = {
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
# Our key -> (the fused key, its place among q, k, v).
TO_FUSED: dict[str, tuple[str, int]] = {
    ours: (fused, place) for fused, parts in FUSED_QKV.items() for place, ours in enumerate(parts)
}
# Checkpoints saved before transformers 5 name the output projection embed_out.
LEGACY_NAMES: dict[str, str] = {"embed_out.weight": "lm_head.weight"}
# Non-parameter buffers of older checkpoints: the causal mask and the rotary frequencies.
BUFFERS = re.compile(r"\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$")

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

    Renamed tensors pass through untouched; split and fused ones are copied exactly, so a round
    trip is bit-identical.
    """

    def __init__(self, model_args: ModelArgs, hf_assets_path: Any = None) -> None:
        super().__init__(model_args, hf_assets_path)

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        hf_state_dict = {}
        stacks: dict[str, dict[int, Any]] = {}  # fused key -> {place among q, k, v: tensor}
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
            if BUFFERS.search(key):
                continue
            key = LEGACY_NAMES.get(key, key)
            template, layer = _template(key)
            if template in FUSED_QKV:
                parts = split_qkv(value, self.model_args.n_heads)
                for name, part in zip(FUSED_QKV[template], parts, strict=True):
                    state_dict[name.format(layer)] = part
                continue
            state_dict[_rename(key, FROM_HF)] = value
        return state_dict
