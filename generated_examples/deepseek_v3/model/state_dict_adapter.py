"""State dict mapping between this model and transformers' DeepseekV3ForCausalLM.

- Rotary layout: the model rotates q/k in transformers' half-split layout, so ``q_proj`` and
  ``k_proj`` load as they are; no per-head permutation.
- Untied embeddings: ``lm_head.weight`` and ``model.embed_tokens.weight`` are separate tensors.
- Non-persistent buffers (the rope cache here, ``rotary_emb.inv_freq`` there) are in neither state
  dict.
- Experts: the checkpoint holds one tensor per expert (``experts.<j>.gate_proj``,
  ``experts.<j>.up_proj``, ``experts.<j>.down_proj``), as the hub's files and ``save_pretrained``
  store them (transformers stacks them only in memory); ``from_hf`` stacks them into the model's
  ``[experts, ...]`` weights and ``to_hf`` splits them again.
- ``moe.expert_bias`` (auxiliary-loss-free balancing) is the router's ``e_score_correction_bias``
  buffer, in the checkpoint both ways.
- Layers past num_hidden_layers in the hub's checkpoints (the multi-token prediction modules of
  num_nextn_predict_layers) are not part of this model: ``from_hf`` skips them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch

from runtime.protocols import StateDictAdapter

# transformers key -> this model's key; "{}" is the layer number.
FROM_HF: dict[str, str] = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.attention_norm.weight",
    "model.layers.{}.self_attn.q_a_proj.weight": "layers.{}.attention.wq_a.weight",
    "model.layers.{}.self_attn.q_b_proj.weight": "layers.{}.attention.wq_b.weight",
    "model.layers.{}.self_attn.kv_a_proj_with_mqa.weight": "layers.{}.attention.wkv_a.weight",
    "model.layers.{}.self_attn.kv_b_proj.weight": "layers.{}.attention.wkv_b.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
    "model.layers.{}.self_attn.q_a_layernorm.weight": "layers.{}.attention.q_norm.weight",
    "model.layers.{}.self_attn.kv_a_layernorm.weight": "layers.{}.attention.kv_norm.weight",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w1.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w3.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
    "model.layers.{}.mlp.gate.weight": "layers.{}.moe.router.gate.weight",
    "model.layers.{}.mlp.gate.e_score_correction_bias": "layers.{}.moe.expert_bias",
    "model.layers.{}.mlp.shared_experts.gate_proj.weight": "layers.{}.moe.shared_expert.w1.weight",
    "model.layers.{}.mlp.shared_experts.up_proj.weight": "layers.{}.moe.shared_expert.w3.weight",
    "model.layers.{}.mlp.shared_experts.down_proj.weight": "layers.{}.moe.shared_expert.w2.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}
TO_HF: dict[str, str] = {ours: theirs for theirs, ours in FROM_HF.items()}
# transformers' per-expert key ("{}": the layer, then the expert) -> this model's stacked weight.
EXPERTS_FROM_HF: dict[str, str] = {
    "model.layers.{}.mlp.experts.{}.gate_proj.weight": "layers.{}.moe.experts.w1",
    "model.layers.{}.mlp.experts.{}.up_proj.weight": "layers.{}.moe.experts.w3",
    "model.layers.{}.mlp.experts.{}.down_proj.weight": "layers.{}.moe.experts.w2",
}
EXPERTS_TO_HF: dict[str, str] = {ours: theirs for theirs, ours in EXPERTS_FROM_HF.items()}

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


class DeepseekV3StateDictAdapter(StateDictAdapter):
    """Converts state dicts to and from transformers' DeepseekV3ForCausalLM layout.

    Tensors are renamed, split or stacked exactly, so a round trip is bit-identical.
    """

    # Kept in float32 by transformers whatever the model's dtype (_keep_in_fp32_modules_strict):
    # the HF export writes these keys in float32 when it writes the rest in bf16 or fp16.
    float32_keys = (
        "mlp.gate.weight",
        "mlp.gate.e_score_correction_bias",
    )

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        hf_state_dict = {}
        for key, value in state_dict.items():
            template, layer = _template(key)
            if template in EXPERTS_TO_HF:
                for expert, weight in enumerate(value.unbind(0)):
                    # A copy: the checkpoint's tensors may not share memory.
                    hf_state_dict[EXPERTS_TO_HF[template].format(layer, expert)] = weight.clone()
                continue
            hf_state_dict[_rename(key, TO_HF)] = value
        return hf_state_dict

    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        state_dict = {}
        experts: dict[str, dict[int, Any]] = {}  # our stacked key -> {expert: its tensor}
        for key, value in hf_state_dict.items():
            number = _template(key)[1]
            if number is not None and int(number) >= self.model_args.n_layers:
                continue  # a multi-token prediction layer (num_nextn_predict_layers)
            per_expert = _expert_template(key)
            if per_expert is not None and per_expert[0] in EXPERTS_FROM_HF:
                template, layer, expert = per_expert
                experts.setdefault(EXPERTS_FROM_HF[template].format(layer), {})[expert] = value
                continue
            state_dict[_rename(key, FROM_HF)] = value
        for name, tensors in experts.items():
            if sorted(tensors) != list(range(self.model_args.num_experts)):
                raise KeyError(
                    f"{name}: the checkpoint holds experts {sorted(tensors)}, "
                    f"not 0..{self.model_args.num_experts - 1}"
                )
            state_dict[name] = torch.stack([tensors[e] for e in range(len(tensors))])
        return state_dict

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
