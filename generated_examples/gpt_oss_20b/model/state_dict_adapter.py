"""State dict mapping between this model and transformers' GptOssForCausalLM.

- Rotary layout: the model rotates q/k in transformers' half-split layout, so ``q_proj`` and
  ``k_proj`` load as they are; no per-head permutation.
- Untied embeddings: ``lm_head.weight`` and ``model.embed_tokens.weight`` are separate tensors.
- Non-persistent buffers (the rope cache here, ``rotary_emb.inv_freq`` there) are in neither state
  dict.
- Experts: the checkpoint holds each layer's experts stacked as transformers keeps them,
  ``experts.gate_up_proj`` ``[experts, dim, 2 * ffn]`` (gate and up interleaved column by column)
  and ``experts.down_proj`` ``[experts, ffn, dim]`` and their ``_bias`` tensors: the transposes of
  the model's ``[experts, out, in]`` weights. ``from_hf`` takes the even and odd columns apart and
  transposes, ``to_hf`` interleaves them again.
- MXFP4: the hub's files store those expert weights quantized, as ``<name>_blocks`` (two FP4 E2M1
  values a byte) and ``<name>_scales`` (an E8M0 exponent per 32 values) of their transpose
  ``[experts, out, in]``; ``from_hf`` dequantizes them to float32 (``runtime.mxfp4``) and ``to_hf``
  writes them unquantized, as ``save_pretrained`` does; ``mxfp4_sources`` names them, so that a rank
  of the sharded import dequantizes only the rows and experts it holds.
- ``moe.expert_bias`` (auxiliary-loss-free balancing) is not in transformers' checkpoints:
  ``from_hf`` starts it at zero and ``to_hf`` leaves it out, so a model trained with a non-zero bias
  routes differently once exported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch

from runtime.mxfp4 import BLOCKS_SUFFIX, SCALES_SUFFIX, dequantize_mxfp4
from runtime.protocols import StateDictAdapter

# transformers key -> this model's key; "{}" is the layer number.
FROM_HF: dict[str, str] = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.attention_norm.weight",
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attention.wq.weight",
    "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attention.wk.weight",
    "model.layers.{}.self_attn.v_proj.weight": "layers.{}.attention.wv.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
    "model.layers.{}.self_attn.q_proj.bias": "layers.{}.attention.wq.bias",
    "model.layers.{}.self_attn.k_proj.bias": "layers.{}.attention.wk.bias",
    "model.layers.{}.self_attn.v_proj.bias": "layers.{}.attention.wv.bias",
    "model.layers.{}.self_attn.o_proj.bias": "layers.{}.attention.wo.bias",
    "model.layers.{}.self_attn.sinks": "layers.{}.attention.sinks",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
    "model.layers.{}.mlp.router.weight": "layers.{}.moe.router.gate.weight",
    "model.layers.{}.mlp.router.bias": "layers.{}.moe.router.gate.bias",
    "model.layers.{}.mlp.experts.down_proj": "layers.{}.moe.experts.w2",
    "model.layers.{}.mlp.experts.down_proj_bias": "layers.{}.moe.experts.b2",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}
TO_HF: dict[str, str] = {ours: theirs for theirs, ours in FROM_HF.items()}
# transformers' fused key -> this model's keys, in the order the checkpoint holds them.
FUSED_FROM_HF: dict[str, tuple[str, ...]] = {
    "model.layers.{}.mlp.experts.gate_up_proj": (
        "layers.{}.moe.experts.w1",
        "layers.{}.moe.experts.w3",
    ),
    "model.layers.{}.mlp.experts.gate_up_proj_bias": (
        "layers.{}.moe.experts.b1",
        "layers.{}.moe.experts.b3",
    ),
}
# This model's key -> (transformers' fused key, its place in the fused tensor).
TO_FUSED: dict[str, tuple[str, int]] = {
    ours: (theirs, place)
    for theirs, parts in FUSED_FROM_HF.items()
    for place, ours in enumerate(parts)
}
# Auxiliary-loss-free balancing's bias: not in transformers' checkpoints. from_hf starts it at
# zero in each layer that has a router.
EXPERT_BIAS = "layers.{}.moe.expert_bias"
ROUTER = "model.layers.{}.mlp.router.weight"
# Stacked expert weights the checkpoint stores with their last two dimensions swapped
# ([experts, in, out]; the model's are [experts, out, in]).
TRANSPOSED = {
    "model.layers.{}.mlp.experts.down_proj",
}
# Stacked expert weights the hub's files store as MXFP4 "<key>_blocks" / "<key>_scales" pairs
# of their transpose, [experts, out, in], quantized in groups of 32 along the input features.
MXFP4_WEIGHTS = {
    "model.layers.{}.mlp.experts.gate_up_proj",
    "model.layers.{}.mlp.experts.down_proj",
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


def dequantize_hub_experts(hf_state_dict: dict[str, Any]) -> dict[str, Any]:
    """``hf_state_dict`` with each MXFP4 pair of :data:`MXFP4_WEIGHTS` replaced by its float32
    tensor in the layout ``save_pretrained`` writes; every other tensor as it is."""
    tensors = dict(hf_state_dict)
    for key in [key for key in tensors if key.endswith(BLOCKS_SUFFIX)]:
        name = key.removesuffix(BLOCKS_SUFFIX)
        if _template(name)[0] not in MXFP4_WEIGHTS:
            continue
        if name + SCALES_SUFFIX not in tensors:
            raise KeyError(f"{key} has no {name + SCALES_SUFFIX} to dequantize it with")
        blocks, scales = tensors.pop(key), tensors.pop(name + SCALES_SUFFIX)
        tensors[name] = dequantize_mxfp4(blocks, scales).transpose(-2, -1)
    return tensors


def split_gate_up(fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate and up out of a checkpoint's ``gate_up_proj`` ``[experts, dim, 2 * ffn]`` (or its
    bias ``[experts, 2 * ffn]``): the even columns are the gate's, the odd ones up's. Weights
    come back as the model's ``[experts, ffn, dim]``."""
    gate, up = fused[..., ::2], fused[..., 1::2]
    if fused.dim() == 3:
        return gate.transpose(1, 2), up.transpose(1, 2)
    return gate, up


def fuse_gate_up(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`split_gate_up`: gate and up columns interleaved."""
    if gate.dim() == 3:
        gate, up = gate.transpose(1, 2), up.transpose(1, 2)
    return torch.stack((gate, up), dim=-1).flatten(-2)


class GptOssStateDictAdapter(StateDictAdapter):
    """Converts state dicts to and from transformers' GptOssForCausalLM layout.

    Tensors are renamed, split or stacked exactly, so a round trip is bit-identical.
    """

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        hf_state_dict = {}
        stacks: dict[str, dict[int, Any]] = {}  # fused key -> {place in it: tensor}
        for key, value in state_dict.items():
            template, layer = _template(key)
            if template == EXPERT_BIAS:
                continue
            if template in TO_FUSED:
                fused, place = TO_FUSED[template]
                stacks.setdefault(fused.format(layer), {})[place] = value
                continue
            hf_state_dict[_rename(key, TO_HF)] = value
        for fused, parts in stacks.items():
            hf_state_dict[fused] = fuse_gate_up(parts[0], parts[1])
        for key, value in hf_state_dict.items():
            if _template(key)[0] in TRANSPOSED:
                hf_state_dict[key] = value.transpose(-2, -1)
        return hf_state_dict

    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        state_dict = {}
        hf_state_dict = dequantize_hub_experts(hf_state_dict)
        for key, value in hf_state_dict.items():
            template, layer = _template(key)
            if template in TRANSPOSED:
                value = value.transpose(-2, -1)
            if template in FUSED_FROM_HF:
                parts = split_gate_up(value)
                for name, part in zip(FUSED_FROM_HF[template], parts, strict=True):
                    state_dict[name.format(layer)] = part
                continue
            state_dict[_rename(key, FROM_HF)] = value
            if template == ROUTER:
                state_dict[EXPERT_BIAS.format(layer)] = torch.zeros(value.shape[0])
        return state_dict

    def mxfp4_sources(self, hf_keys: Iterable[str]) -> dict[str, bool]:
        """The MXFP4 pairs among ``hf_keys`` that ``from_hf`` dequantizes -> True: each stands
        for the tensor ``save_pretrained`` writes, the transpose of the pair's ``[experts, out,
        in]``. Lets a rank read and dequantize only its experts' rows and groups."""
        pairs = {}
        for key in hf_keys:
            name = key.removesuffix(BLOCKS_SUFFIX)
            if key.endswith(BLOCKS_SUFFIX) and _template(name)[0] in MXFP4_WEIGHTS:
                pairs[name] = True
        return pairs
