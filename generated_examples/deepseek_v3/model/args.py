"""Model arguments for deepseek_v3 (DeepseekV3ForCausalLM).

Defaults are the full-size model read from its config.json. ``ModelArgs.from_hf`` maps the
transformers field names onto these; ``to_hf`` maps them back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from runtime.protocols import BaseModelArgs

# Features fixed by this package's code. A config.json that differs in any of them describes a
# different architecture: regenerate the package instead of loading it here.
ARCHITECTURE: dict[str, Any] = {
    "model_type": "deepseek_v3",
    "hidden_act": "silu",
    "rope_type": "yarn",
    # rope_scaling.truncate: YaRN's ramp bounds rounded to whole dimensions.
    "rope_truncate": True,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "rope_interleave": True,
    "norm_topk_prob": True,
}


@dataclass
class ModelArgs(BaseModelArgs):
    """Dimensions of the model; each comment names the config.json field."""

    vocab_size: int = 129280  # vocab_size
    dim: int = 7168  # hidden_size
    n_layers: int = 61  # num_hidden_layers
    n_heads: int = 128  # num_attention_heads
    ffn_dim: int = 18432  # intermediate_size
    max_seq_len: int = 163840  # max_position_embeddings
    norm_eps: float = 1e-06  # rms_norm_eps
    rope_theta: float = 10000.0  # rope_theta
    rope_factor: float = 40.0  # rope_scaling.factor
    # YaRN interpolates the frequencies that turn fewer than beta_slow times over the
    # original_max_position_embeddings positions the model was pretrained on (divided by factor),
    # keeps those turning more than beta_fast times, and ramps linearly between.
    rope_original_max_seq_len: int = 4096  # rope_scaling.original_max_position_embeddings
    rope_beta_fast: float = 32.0  # rope_scaling.beta_fast
    rope_beta_slow: float = 1.0  # rope_scaling.beta_slow
    rope_mscale: float | None = 1.0  # rope_scaling.mscale
    rope_mscale_all_dim: float | None = 1.0  # rope_scaling.mscale_all_dim
    # YaRN multiplies cos and sin by rope_scaling.attention_factor; without it, transformers infers
    # it from factor: 0.1 * mscale * ln(factor) + 1 over the same with mscale_all_dim where both are
    # set, else 0.1 * ln(factor) + 1 (1 for factor <= 1). This config gives none: (0.1 * 1.0 *
    # ln(40.0) + 1) / (0.1 * 1.0 * ln(40.0) + 1) = 1.
    rope_attention_factor: float = 1.0  # rope_scaling.attention_factor
    # Queries: q_a_proj to q_lora_rank, RMSNorm, q_b_proj to the heads.
    q_lora_rank: int = 1536  # q_lora_rank
    # Keys and values: kv_a_proj_with_mqa to a kv_lora_rank latent (plus the shared rotary key),
    # RMSNorm, kv_b_proj to every head's keys and values.
    kv_lora_rank: int = 512  # kv_lora_rank
    qk_nope_head_dim: int = 128  # qk_nope_head_dim: channels without positions
    qk_rope_head_dim: int = 64  # qk_rope_head_dim: rotated channels
    v_head_dim: int = 128  # v_head_dim
    num_experts: int = 256  # n_routed_experts
    top_k: int = 8  # num_experts_per_tok
    # Each expert's hidden size; intermediate_size (ffn_dim) is the dense MLPs'.
    moe_ffn_dim: int = 2048  # moe_intermediate_size
    # One shared SwiGLU MLP of n_shared_experts * moe_intermediate_size sees every token.
    n_shared_experts: int = 1  # n_shared_experts
    # Experts are split into n_group groups; a token's experts come from its topk_group best groups.
    n_group: int = 8  # n_group
    topk_group: int = 4  # topk_group
    # The routed experts' weights are multiplied by routed_scaling_factor.
    routed_scaling_factor: float = 2.5  # routed_scaling_factor
    # The first first_k_dense_replace layers have a dense MLP of ffn_dim, the others experts.
    first_k_dense_replace: int = 3  # first_k_dense_replace
    # Experts multiply with torch._grouped_mm where it applies; False: one expert after the other
    # (the reference, same values).
    use_grouped_mm: bool = True  # not in config.json
    initializer_range: float = 0.02  # initializer_range

    @property
    def n_kv_heads(self) -> int:
        """Latent attention expands keys and values for every head."""
        return self.n_heads

    def is_moe_layer(self, layer_id: int) -> bool:
        """Whether layer ``layer_id`` has experts (else a dense MLP), as transformers decides."""
        return layer_id >= self.first_k_dense_replace

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> ModelArgs:
        """Read a transformers config.json dict of this architecture, at any size.

        Accepts both rope styles: old (``rope_theta`` and ``rope_scaling``) and new
        (``rope_parameters``). Missing fields take DeepseekV3Config's defaults.
        """
        check_architecture(config)
        rope = rope_parameters(config)
        return cls(
            vocab_size=config["vocab_size"],
            dim=config["hidden_size"],
            n_layers=config["num_hidden_layers"],
            n_heads=config["num_attention_heads"],
            ffn_dim=config["intermediate_size"],
            max_seq_len=config.get("max_position_embeddings", 4096),
            norm_eps=config.get("rms_norm_eps", 1e-06),
            rope_theta=rope["rope_theta"],
            rope_factor=rope["factor"],
            rope_original_max_seq_len=rope.get("original_max_position_embeddings")
            or config.get("max_position_embeddings", 4096),
            rope_beta_fast=rope.get("beta_fast") or 32.0,
            rope_beta_slow=rope.get("beta_slow") or 1.0,
            rope_mscale=rope.get("mscale"),
            rope_mscale_all_dim=rope.get("mscale_all_dim"),
            rope_attention_factor=yarn_attention_factor(rope),
            q_lora_rank=config.get("q_lora_rank", 1536),
            kv_lora_rank=config.get("kv_lora_rank", 512),
            qk_nope_head_dim=config.get("qk_nope_head_dim", 128),
            qk_rope_head_dim=config.get("qk_rope_head_dim", 64),
            v_head_dim=config.get("v_head_dim", 128),
            num_experts=config.get("n_routed_experts", 256),
            top_k=config.get("num_experts_per_tok", 8),
            moe_ffn_dim=config.get("moe_intermediate_size", 2048),
            n_shared_experts=config.get("n_shared_experts", 1),
            n_group=config.get("n_group", 8),
            topk_group=config.get("topk_group", 4),
            routed_scaling_factor=config.get("routed_scaling_factor", 2.5),
            first_k_dense_replace=config.get("first_k_dense_replace", 3),
            initializer_range=config.get("initializer_range", 0.02),
        )

    def to_hf(self) -> dict[str, Any]:
        """The transformers config.json dict (DeepseekV3Config) for these args."""
        return {
            "architectures": ["DeepseekV3ForCausalLM"],
            "model_type": ARCHITECTURE["model_type"],
            "num_key_value_heads": self.n_heads,
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "intermediate_size": self.ffn_dim,
            "max_position_embeddings": self.max_seq_len,
            "rms_norm_eps": self.norm_eps,
            "rope_parameters": {
                "rope_type": ARCHITECTURE["rope_type"],
                "rope_theta": self.rope_theta,
                "factor": self.rope_factor,
                "original_max_position_embeddings": self.rope_original_max_seq_len,
                "beta_fast": self.rope_beta_fast,
                "beta_slow": self.rope_beta_slow,
                "mscale": self.rope_mscale,
                "mscale_all_dim": self.rope_mscale_all_dim,
                "attention_factor": self.rope_attention_factor,
                "truncate": ARCHITECTURE["rope_truncate"],
            },
            "hidden_act": ARCHITECTURE["hidden_act"],
            "tie_word_embeddings": ARCHITECTURE["tie_word_embeddings"],
            "attention_bias": ARCHITECTURE["attention_bias"],
            "rope_interleave": ARCHITECTURE["rope_interleave"],
            "norm_topk_prob": ARCHITECTURE["norm_topk_prob"],
            "q_lora_rank": self.q_lora_rank,
            "kv_lora_rank": self.kv_lora_rank,
            "qk_nope_head_dim": self.qk_nope_head_dim,
            "qk_rope_head_dim": self.qk_rope_head_dim,
            "v_head_dim": self.v_head_dim,
            "n_routed_experts": self.num_experts,
            "num_experts_per_tok": self.top_k,
            "moe_intermediate_size": self.moe_ffn_dim,
            "n_shared_experts": self.n_shared_experts,
            "n_group": self.n_group,
            "topk_group": self.topk_group,
            "routed_scaling_factor": self.routed_scaling_factor,
            "first_k_dense_replace": self.first_k_dense_replace,
            "initializer_range": self.initializer_range,
        }

    def update_from_config(self, job_config: Any, **kwargs: Any) -> None:
        """Check the training sequence length against the model's positions."""
        seq_len = job_config.training.seq_len
        if seq_len > self.max_seq_len:
            raise ValueError(
                f"training.seq_len ({seq_len}) exceeds max_position_embeddings "
                f"({self.max_seq_len}) of this model"
            )

    def get_nparams_and_flops(self, model: nn.Module, seq_len: int) -> tuple[int, int]:
        """Parameter count and training FLOPs per token.

        FLOPs follow torchtitan: 6 x (matmul parameters) + 6 x layers x heads x 2 x head_dim x
        seq_len for attention scores and values.
        """
        nparams = sum(p.numel() for p in model.parameters())
        # A token passes through top_k of the num_experts experts: count those.
        experts = sum(p.numel() for name, p in model.named_parameters() if ".moe.experts." in name)
        nparams_active = nparams - experts + experts * self.top_k // self.num_experts
        # The embedding table is a lookup, not a matmul.
        embedding_params = sum(p.numel() for p in model.tok_embeddings.parameters())
        matmul_params = nparams_active - embedding_params
        attention_flops = (
            6
            * self.n_layers
            * self.n_heads
            * (self.qk_nope_head_dim + self.qk_rope_head_dim + self.v_head_dim)
            * seq_len
        )
        return nparams, 6 * matmul_params + attention_flops


def check_architecture(config: dict[str, Any]) -> None:
    """Refuse a config.json whose features differ from the ones this package implements."""
    rope = rope_parameters(config)
    found = {
        "model_type": config.get("model_type"),
        "hidden_act": config.get("hidden_act", "silu"),
        "rope_type": rope["rope_type"],
        "rope_truncate": rope.get("truncate", True),
        "tie_word_embeddings": config.get("tie_word_embeddings", False),
        "attention_bias": config.get("attention_bias", False),
        "rope_interleave": config.get("rope_interleave", True),
        "norm_topk_prob": config.get("norm_topk_prob", True),
    }
    for field, expected in ARCHITECTURE.items():
        if found[field] != expected:
            raise ValueError(
                f"config field {field}={found[field]!r} differs from this package's "
                f"{expected!r}; run `scaffold regenerate` with the new config"
            )


def rope_parameters(config: dict[str, Any]) -> dict[str, Any]:
    """The rope settings of a config.json in either style, as one dict.

    New style: ``rope_parameters``. Old style: ``rope_scaling``, with ``rope_theta`` at the top
    level. Missing settings take DeepseekV3Config's defaults.
    """
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    params.setdefault("rope_type", params.pop("type", "default"))
    params.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    return params


def yarn_attention_factor(rope: dict[str, Any]) -> float:
    """rope_scaling.attention_factor, else YaRN's scale as transformers infers it from ``factor``.

    ``0.1 * ln(factor) + 1`` (1 when the context is not extended); where rope_scaling sets both
    ``mscale`` and ``mscale_all_dim``, the same with each as a multiplier of the log, divided.
    """
    if rope.get("attention_factor") is not None:
        return rope["attention_factor"]
    factor = rope["factor"]
    if factor <= 1:
        return 1.0
    if rope.get("mscale") and rope.get("mscale_all_dim"):
        scale = 0.1 * rope["mscale"] * math.log(factor) + 1.0
        return scale / (0.1 * rope["mscale_all_dim"] * math.log(factor) + 1.0)
    return 0.1 * math.log(factor) + 1.0
