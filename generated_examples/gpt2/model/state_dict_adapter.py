"""State dict mapping between this model and transformers' GPT2LMHeadModel.

- Tied embeddings (tie_word_embeddings): transformers' checkpoints store only
  ``transformer.wte.weight``; ``output.weight`` is the same tensor.
- Fused tensors: the checkpoint stacks q, k and v in ``attn.c_attn`` (along the output features, in
  that order). The model keeps separate projections, so tensor parallelism shards each of them
  whole: ``from_hf`` splits the fused tensors (into views) and ``to_hf`` concatenates them again.
- Conv1D weights: ``attn.c_attn``, ``attn.c_proj``, ``mlp.c_fc`` and ``mlp.c_proj`` store the
  transpose of ``nn.Linear``'s weight (input features first): weights are transposed both ways,
  biases not.
- Non-parameter buffers some checkpoints carry (``attn.bias``, ``attn.masked_bias``) are skipped by
  ``from_hf``.
- The hub's checkpoints may name keys without the ``transformer.`` prefix; ``from_hf`` reads those
  too.
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
    "transformer.h.{}.mlp.c_proj.weight": "layers.{}.feed_forward.w2.weight",
    "transformer.h.{}.mlp.c_fc.bias": "layers.{}.feed_forward.w1.bias",
    "transformer.h.{}.mlp.c_proj.bias": "layers.{}.feed_forward.w2.bias",
    "transformer.ln_f.weight": "norm.weight",
    "transformer.ln_f.bias": "norm.bias",
}
TO_HF: dict[str, str] = {ours: theirs for theirs, ours in FROM_HF.items()}
# transformers' fused key -> this model's keys, in the order the checkpoint holds them.
FUSED_FROM_HF: dict[str, tuple[str, ...]] = {
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
# This model's key -> (transformers' fused key, its place in the fused tensor).
TO_FUSED: dict[str, tuple[str, int]] = {
    ours: (theirs, place)
    for theirs, parts in FUSED_FROM_HF.items()
    for place, ours in enumerate(parts)
}
# Conv1D weights, stored transposed (input features first) in the checkpoint.
CONV1D_WEIGHTS = {
    "transformer.h.{}.attn.c_attn.weight",
    "transformer.h.{}.attn.c_proj.weight",
    "transformer.h.{}.mlp.c_fc.weight",
    "transformer.h.{}.mlp.c_proj.weight",
}
# Non-parameter buffers some checkpoints carry.
BUFFERS = {
    "transformer.h.{}.attn.bias",
    "transformer.h.{}.attn.masked_bias",
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


class Gpt2StateDictAdapter(StateDictAdapter):
    """Converts state dicts to and from transformers' GPT2LMHeadModel layout.

    Tensors are renamed, transposed, split or concatenated exactly, so a round trip is
    bit-identical.
    """

    def __init__(self, model_args: ModelArgs, hf_assets_path: Any = None) -> None:
        super().__init__(model_args, hf_assets_path)
        dim = model_args.dim
        # Output features of each stacked part, in FUSED_FROM_HF's order.
        self.split_sizes = {
            "transformer.h.{}.attn.c_attn.weight": (dim, dim, dim),
            "transformer.h.{}.attn.c_attn.bias": (dim, dim, dim),
        }

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        hf_state_dict = {}
        stacks: dict[str, dict[int, Any]] = {}  # fused key -> {place in it: tensor}
        for key, value in state_dict.items():
            if key == "output.weight":
                continue  # tied to tok_embeddings.weight; transformers re-ties it on load
            template, layer = _template(key)
            if template in TO_FUSED:
                fused, place = TO_FUSED[template]
                stacks.setdefault(fused.format(layer), {})[place] = value
                continue
            hf_state_dict[_rename(key, TO_HF)] = value
        for fused, parts in stacks.items():
            hf_state_dict[fused] = torch.cat([parts[place] for place in sorted(parts)])
        for key, value in hf_state_dict.items():
            if _template(key)[0] in CONV1D_WEIGHTS:
                hf_state_dict[key] = value.t()
        return hf_state_dict

    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        state_dict = {}
        for key, value in hf_state_dict.items():
            if not key.startswith(("transformer.", "lm_head.")):
                key = "transformer." + key  # the hub's checkpoints leave the prefix out
            if key == "lm_head.weight":
                continue  # the same tensor as transformer.wte.weight
            template, layer = _template(key)
            if template in BUFFERS:
                continue
            if template in CONV1D_WEIGHTS:
                value = value.t()
            if template in FUSED_FROM_HF:
                parts = value.split(self.split_sizes[template])
                for name, part in zip(FUSED_FROM_HF[template], parts, strict=True):
                    state_dict[name.format(layer)] = part
                continue
            state_dict[_rename(key, FROM_HF)] = value
        state_dict["output.weight"] = state_dict["tok_embeddings.weight"]
        return state_dict
