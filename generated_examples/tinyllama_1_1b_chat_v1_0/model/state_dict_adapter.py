"""State dict mapping between this model and transformers' LlamaForCausalLM.

- Rotary layout: the model rotates q/k in transformers' half-split layout, so ``q_proj`` and
  ``k_proj`` load as they are; no per-head permutation.
- Untied embeddings: ``lm_head.weight`` and ``model.embed_tokens.weight`` are separate tensors.
- Non-persistent buffers (the rope cache here, ``rotary_emb.inv_freq`` there) are in neither state
  dict.
"""

from __future__ import annotations

import re
from typing import Any

from runtime.protocols import StateDictAdapter

# transformers key -> this model's key; "{}" is the layer number.
FROM_HF: dict[str, str] = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.attention_norm.weight",
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attention.wq.weight",
    "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attention.wk.weight",
    "model.layers.{}.self_attn.v_proj.weight": "layers.{}.attention.wv.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w1.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w3.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}
TO_HF: dict[str, str] = {ours: theirs for theirs, ours in FROM_HF.items()}

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


class LlamaStateDictAdapter(StateDictAdapter):
    """Converts state dicts to and from transformers' LlamaForCausalLM layout.

    Tensors pass through untouched (plain tensors or DTensors), so a round trip is bit-identical.
    """

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        hf_state_dict = {}
        for key, value in state_dict.items():
            hf_state_dict[_rename(key, TO_HF)] = value
        return hf_state_dict

    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        state_dict = {}
        for key, value in hf_state_dict.items():
            state_dict[_rename(key, FROM_HF)] = value
        return state_dict
