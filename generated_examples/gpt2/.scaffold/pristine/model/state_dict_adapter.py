"""State dict mapping between this model and transformers' GPT2LMHeadModel.

- Conv1D weights: GPT-2's linear layers (c_attn, c_proj, c_fc) store ``[in, out]``, the
  transpose of ``nn.Linear``'s ``[out, in]``: weights are transposed both ways, biases not.
- Fused q/k/v: ``attn.c_attn`` holds q, k and v one after the other along its output features.
  The model keeps ``wq``, ``wk``, ``wv`` apart so tensor parallelism shards whole heads of each:
  ``from_hf`` splits weight and bias, ``to_hf`` concatenates them again.
- Tied embeddings (tie_word_embeddings): checkpoints store only ``transformer.wte.weight``;
  ``output.weight`` is the same tensor.
- The hub's GPT-2 checkpoints name keys without the ``transformer.`` prefix and carry attention
  mask buffers (``attn.bias``, ``attn.masked_bias``): ``from_hf`` reads them as well.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from runtime.protocols import StateDictAdapter

from .args import ModelArgs

# transformers key -> this model's key; "{}" is the layer number.
FROM_HF: dict[str, str] = {
    "transformer.wte.weight": "tok_embeddings.weight",
    "transformer.wpe.weight": "pos_embeddings.weight",
    "transformer.h.{}.ln_1.weight": "layers.{}.attention_norm.weight",
    "transformer.h.{}.ln_1.bias": "layers.{}.attention_norm.bias",
    "transformer.h.{}.attn.c_proj.weight": "layers.{}.attention.wo.weight",
    "transformer.h.{}.attn.c_proj.bias": "layers.{}.attention.wo.bias",
    "transformer.h.{}.ln_2.weight": "layers.{}.ffn_norm.weight",
    "transformer.h.{}.ln_2.bias": "layers.{}.ffn_norm.bias",
    "transformer.h.{}.mlp.c_fc.weight": "layers.{}.feed_forward.w1.weight",
    "transformer.h.{}.mlp.c_fc.bias": "layers.{}.feed_forward.w1.bias",
    "transformer.h.{}.mlp.c_proj.weight": "layers.{}.feed_forward.w2.weight",
    "transformer.h.{}.mlp.c_proj.bias": "layers.{}.feed_forward.w2.bias",
    "transformer.ln_f.weight": "norm.weight",
    "transformer.ln_f.bias": "norm.bias",
}
TO_HF: dict[str, str] = {ours: theirs for theirs, ours in FROM_HF.items()}
# Conv1D weights, stored transposed in the checkpoint.
CONV1D_WEIGHTS = {
    "transformer.h.{}.attn.c_attn.weight",
    "transformer.h.{}.attn.c_proj.weight",
    "transformer.h.{}.mlp.c_fc.weight",
    "transformer.h.{}.mlp.c_proj.weight",
}
# The fused q/k/v projection and its bias, and the parts each holds.
FUSED_QKV: dict[str, tuple[str, str, str]] = {
    "transformer.h.{}.attn.c_attn.weight": (
        "layers.{}.attention.wq.weight",
        "layers.{}.attention.wk.weight",
        "layers.{}.attention.wv.weight",
    ),
    "transformer.h.{}.attn.c_attn.bias": (
        "layers.{}.attention.wq.bias",
        "layers.{}.attention.wk.bias",
        "layers.{}.attention.wv.bias",
    ),
}
# Our key -> (the fused key, its place among q, k, v).
TO_FUSED: dict[str, tuple[str, int]] = {
    ours: (fused, place) for fused, parts in FUSED_QKV.items() for place, ours in enumerate(parts)
}
# Attention mask buffers of the hub's checkpoints: not parameters.
BUFFERS = re.compile(r"\.attn\.(bias|masked_bias)$")

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


class Gpt2StateDictAdapter(StateDictAdapter):
    """Converts state dicts to and from transformers' GPT2LMHeadModel layout.

    Tensors are renamed, transposed, split or concatenated exactly, so a round trip is
    bit-identical.
    """

    def __init__(self, model_args: ModelArgs, hf_assets_path: Any = None) -> None:
        super().__init__(model_args, hf_assets_path)

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        hf_state_dict = {}
        stacks: dict[str, dict[int, Any]] = {}  # fused key -> {place among q, k, v: tensor}
        for key, value in state_dict.items():
            if key == "output.weight":
                continue  # tied to tok_embeddings.weight; transformers re-ties it on load
            template, layer = _template(key)
            if template in TO_FUSED:
                fused, place = TO_FUSED[template]
                stacks.setdefault(fused.format(layer), {})[place] = value
                continue
            hf_key = _rename(key, TO_HF)
            hf_state_dict[hf_key] = value.t() if _template(hf_key)[0] in CONV1D_WEIGHTS else value
        for fused, parts in stacks.items():
            q, k, v = (parts[place] for place in range(3))
            if _template(fused)[0] in CONV1D_WEIGHTS:
                hf_state_dict[fused] = torch.cat([q.t(), k.t(), v.t()], dim=-1)
            else:
                hf_state_dict[fused] = torch.cat([q, k, v])
        return hf_state_dict

    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        state_dict = {}
        for key, value in hf_state_dict.items():
            if BUFFERS.search(key):
                continue
            if not key.startswith(("transformer.", "lm_head.")):
                key = "transformer." + key  # the hub's checkpoints leave the prefix out
            if key == "lm_head.weight":
                continue  # the same tensor as transformer.wte.weight
            template, layer = _template(key)
            if template in FUSED_QKV:
                parts = value.split(self.model_args.dim, dim=-1)
                for name, part in zip(FUSED_QKV[template], parts, strict=True):
                    state_dict[name.format(layer)] = part.t() if part.dim() == 2 else part
                continue
            state_dict[_rename(key, FROM_HF)] = value.t() if template in CONV1D_WEIGHTS else value
        state_dict["output.weight"] = state_dict["tok_embeddings.weight"]
        return state_dict
