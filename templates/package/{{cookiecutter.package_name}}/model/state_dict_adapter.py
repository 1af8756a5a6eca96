{%- set s = cookiecutter.spec -%}
{%- set v = cookiecutter.views.adapter -%}
"""State dict mapping between this model and transformers' {{ s.hf_architecture }}.

{% filter prose %}
{%- for bullet in v.bullets %}
- {{ bullet }}
{%- endfor %}
{% endfilter %}
"""

from __future__ import annotations

import re
{%- if v.experts or v.mxfp4 %}
from collections.abc import Iterable
{%- endif %}
from typing import Any
{% if v.fused or v.expert_bias or v.experts %}
import torch
{% endif %}
{%- if v.mxfp4 %}
from runtime.mxfp4 import BLOCKS_SUFFIX, SCALES_SUFFIX, dequantize_mxfp4
{%- endif %}
from runtime.protocols import StateDictAdapter
{%- if v.size_locals %}

from .args import ModelArgs
{%- endif %}

# transformers key -> this model's key; "{}" is the layer number.
FROM_HF: dict[str, str] = {
{%- for theirs, ours in v.from_hf %}
    {{ theirs | py }}: {{ ours | py }},
{%- endfor %}
}
TO_HF: dict[str, str] = {ours: theirs for theirs, ours in FROM_HF.items()}
{%- if v.fused %}
# transformers' fused key -> this model's keys, in the order the checkpoint holds them.
FUSED_FROM_HF: dict[str, tuple[str, ...]] = {
{%- for f in v.fused %}
    {{ f.theirs | py }}: {{ f.ours | py }},
{%- endfor %}
}
# This model's key -> (transformers' fused key, its place in the fused tensor).
TO_FUSED: dict[str, tuple[str, int]] = {
    ours: (theirs, place) for theirs, parts in FUSED_FROM_HF.items() for place, ours in enumerate(parts)
}
{%- endif %}
{%- if v.experts %}
# transformers' per-expert key ("{}": the layer, then the expert) -> this model's stacked weight.
EXPERTS_FROM_HF: dict[str, str] = {
{%- for theirs, ours in v.experts %}
    {{ theirs | py }}: {{ ours | py }},
{%- endfor %}
}
EXPERTS_TO_HF: dict[str, str] = {ours: theirs for theirs, ours in EXPERTS_FROM_HF.items()}
{%- endif %}
{%- if v.expert_bias %}
# Auxiliary-loss-free balancing's bias: not in transformers' checkpoints. from_hf starts it at
# zero in each layer that has a router.
EXPERT_BIAS = {{ v.expert_bias | py }}
ROUTER = {{ v.router_key | py }}
{%- endif %}
{%- if v.transposed %}
# Stacked expert weights the checkpoint stores with their last two dimensions swapped
# ([experts, in, out]; the model's are [experts, out, in]).
TRANSPOSED = {
{%- for key in v.transposed %}
    {{ key | py }},
{%- endfor %}
}
{%- endif %}
{%- if v.mxfp4 %}
# Stacked expert weights the hub's files store as MXFP4 "<key>_blocks" / "<key>_scales" pairs
# of their transpose, [experts, out, in], quantized in groups of 32 along the input features.
MXFP4_WEIGHTS = {
{%- for key in v.mxfp4 %}
    {{ key | py }},
{%- endfor %}
}
{%- endif %}
{%- if v.conv1d %}
# Conv1D weights, stored transposed (input features first) in the checkpoint.
CONV1D_WEIGHTS = {
{%- for key in v.conv1d %}
    {{ key | py }},
{%- endfor %}
}
{%- endif %}
{%- if v.legacy_names %}
# Older checkpoints' key -> today's.
LEGACY_NAMES: dict[str, str] = {
{%- for old, new in v.legacy_names %}
    {{ old | py }}: {{ new | py }},
{%- endfor %}
}
{%- endif %}
{%- if v.buffers %}
# Non-parameter buffers some checkpoints carry.
BUFFERS = {
{%- for key in v.buffers %}
    {{ key | py }},
{%- endfor %}
}
{%- endif %}

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
{%- if v.experts %}


def _expert_template(key: str) -> tuple[str, str, int] | None:
    """A per-expert key with its layer and expert numbers replaced by "{}", the layer and the
    expert; None for a key without both numbers."""
    numbers = list(_LAYER_NUMBER.finditer(key))
    if len(numbers) != 2:
        return None
    layer, expert = numbers
    template = (
        key[: layer.start()]
        + ".{}."
        + key[layer.end() : expert.start()]
        + ".{}."
        + key[expert.end() :]
    )
    return template, layer.group(1), int(expert.group(1))
{%- endif %}
{%- if v.mxfp4 %}


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
{%- endif %}
{%- if v.interleaved %}


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
{%- endif %}
{%- if v.per_head %}


def split_qkv(fused: torch.Tensor, n_heads: int) -> tuple[torch.Tensor, ...]:
    """q, k, v out of a per-head fused ``[heads * 3 * head_dim, ...]`` weight or bias."""
    per_head = fused.unflatten(0, (n_heads, 3, -1))
    return tuple(per_head[:, part].flatten(0, 1) for part in range(3))


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of :func:`split_qkv`: head after head, its q, k and v rows."""
    parts = [t.unflatten(0, (n_heads, -1)) for t in (q, k, v)]
    return torch.stack(parts, dim=1).flatten(0, 2)
{%- endif %}


class {{ cookiecutter.class_prefix }}StateDictAdapter(StateDictAdapter):
    """Converts state dicts to and from transformers' {{ s.hf_architecture }} layout.

    {{ v.exactness | prose(indent=4, first_indent=0) }}
    """
{%- if v.float32 %}

    # Kept in float32 by transformers whatever the model's dtype (_keep_in_fp32_modules_strict):
    # the HF export writes these keys in float32 when it writes the rest in bf16 or fp16.
    float32_keys = (
{%- for key in v.float32 %}
        {{ key | py }},
{%- endfor %}
    )
{%- endif %}
{%- if v.size_locals %}

    def __init__(self, model_args: ModelArgs, hf_assets_path: Any = None) -> None:
        super().__init__(model_args, hf_assets_path)
{%- for name, expression in v.size_locals %}
        {{ name }} = {{ expression }}
{%- endfor %}
        # Output features of each stacked part, in FUSED_FROM_HF's order.
        self.split_sizes = {
{%- for f in v.fused %}
            {{ f.theirs | py }}: {{ f.sizes }},
{%- endfor %}
        }
{%- endif %}

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        hf_state_dict = {}
{%- if v.fused %}
        stacks: dict[str, dict[int, Any]] = {}  # fused key -> {place in it: tensor}
{%- endif %}
        for key, value in state_dict.items():
{%- if s.tie_word_embeddings %}
            if key == "output.weight":
                continue  # tied to tok_embeddings.weight; transformers re-ties it on load
{%- endif %}
{%- if v.fused or v.expert_bias or v.experts %}
            template, layer = _template(key)
{%- endif %}
{%- if v.expert_bias %}
            if template == EXPERT_BIAS:
                continue
{%- endif %}
{%- if v.experts %}
            if template in EXPERTS_TO_HF:
                for expert, weight in enumerate(value.unbind(0)):
                    # A copy: the checkpoint's tensors may not share memory.
                    hf_state_dict[EXPERTS_TO_HF[template].format(layer, expert)] = weight.clone()
                continue
{%- endif %}
{%- if v.fused %}
            if template in TO_FUSED:
                fused, place = TO_FUSED[template]
                stacks.setdefault(fused.format(layer), {})[place] = value
                continue
{%- endif %}
            hf_state_dict[_rename(key, TO_HF)] = value
{%- if v.fused %}
        for fused, parts in stacks.items():
            hf_state_dict[fused] = {{ v.fuse_parts }}
{%- endif %}
{%- if v.conv1d %}
        for key, value in hf_state_dict.items():
            if _template(key)[0] in CONV1D_WEIGHTS:
                hf_state_dict[key] = value.t()
{%- endif %}
{%- if v.transposed %}
        for key, value in hf_state_dict.items():
            if _template(key)[0] in TRANSPOSED:
                hf_state_dict[key] = value.transpose(-2, -1)
{%- endif %}
        return hf_state_dict

    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        state_dict = {}
{%- if v.mxfp4 %}
        hf_state_dict = dequantize_hub_experts(hf_state_dict)
{%- endif %}
{%- if v.experts %}
        experts: dict[str, dict[int, Any]] = {}  # our stacked key -> {expert: its tensor}
{%- endif %}
        for key, value in hf_state_dict.items():
{%- if v.hub_prefix %}
            if not key.startswith({{ v.kept_prefixes | py }}):
                key = {{ v.hub_prefix | py }} + key  # the hub's checkpoints leave the prefix out
{%- endif %}
{%- if v.legacy_names %}
            key = LEGACY_NAMES.get(key, key)
{%- endif %}
{%- if s.tie_word_embeddings %}
            if key == {{ v.lm_head_key | py }}:
                continue  # the same tensor as {{ v.embedding_key }}
{%- endif %}
{%- if v.extra_layers %}
            number = _template(key)[1]
            if number is not None and int(number) >= self.model_args.n_layers:
                continue  # a multi-token prediction layer (num_nextn_predict_layers)
{%- endif %}
{%- if v.experts %}
            per_expert = _expert_template(key)
            if per_expert is not None and per_expert[0] in EXPERTS_FROM_HF:
                template, layer, expert = per_expert
                experts.setdefault(EXPERTS_FROM_HF[template].format(layer), {})[expert] = value
                continue
{%- endif %}
{%- if v.reads_template %}
            template, layer = _template(key)
{%- endif %}
{%- if v.buffers %}
            if template in BUFFERS:
                continue
{%- endif %}
{%- if v.conv1d %}
            if template in CONV1D_WEIGHTS:
                value = value.t()
{%- endif %}
{%- if v.transposed %}
            if template in TRANSPOSED:
                value = value.transpose(-2, -1)
{%- endif %}
{%- if v.fused %}
            if template in FUSED_FROM_HF:
                parts = {{ v.split_parts }}
                for name, part in zip(FUSED_FROM_HF[template], parts, strict=True):
                    state_dict[name.format(layer)] = part
                continue
{%- endif %}
            state_dict[_rename(key, FROM_HF)] = value
{%- if v.expert_bias %}
            if template == ROUTER:
                state_dict[EXPERT_BIAS.format(layer)] = torch.zeros(value.shape[0])
{%- endif %}
{%- if v.experts %}
        for name, tensors in experts.items():
            if sorted(tensors) != list(range(self.model_args.num_experts)):
                raise KeyError(
                    f"{name}: the checkpoint holds experts {sorted(tensors)}, "
                    f"not 0..{self.model_args.num_experts - 1}"
                )
            state_dict[name] = torch.stack([tensors[e] for e in range(len(tensors))])
{%- endif %}
{%- if s.tie_word_embeddings %}
        state_dict["output.weight"] = state_dict["tok_embeddings.weight"]
{%- endif %}
        return state_dict
{%- if v.experts %}

    def stacked_sources(self, hf_keys: Iterable[str]) -> dict[str, list[str]]:
        """This model's stacked expert weights -> the checkpoint keys ``from_hf`` stacks into
        them, expert by expert: a rank of expert parallelism reads only its experts' tensors."""
        experts: dict[str, dict[int, str]] = {}  # our stacked key -> {expert: checkpoint key}
        for key in hf_keys:
            per_expert = _expert_template(key)
            if per_expert is not None and per_expert[0] in EXPERTS_FROM_HF:
                template, layer, expert = per_expert
                experts.setdefault(EXPERTS_FROM_HF[template].format(layer), {})[expert] = key
        return {name: [keys[e] for e in sorted(keys)] for name, keys in experts.items()}
{%- endif %}
{%- if v.mxfp4 %}

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
{%- endif %}
