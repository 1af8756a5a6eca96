"""Model arguments for gpt_oss_20b (GptOssForCausalLM).

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
    "model_type": "gpt_oss",
    "hidden_act": "silu",
    "rope_type": "yarn",
    # rope_scaling.truncate: YaRN's ramp bounds rounded to whole dimensions.
    "rope_truncate": False,
    "tie_word_embeddings": False,
    "attention_bias": True,
    "sliding_window_attention": True,
}


@dataclass
class ModelArgs(BaseModelArgs):
    """Dimensions of the model; each comment names the config.json field."""

    vocab_size: int = 201088  # vocab_size
    dim: int = 2880  # hidden_size
    n_layers: int = 24  # num_hidden_layers
    n_heads: int = 64  # num_attention_heads
    n_kv_heads: int = 8  # num_key_value_heads
    head_dim: int = 64  # head_dim
    ffn_dim: int = 2880  # intermediate_size
    max_seq_len: int = 131072  # max_position_embeddings
    norm_eps: float = 1e-05  # rms_norm_eps
    rope_theta: float = 150000.0  # rope_theta
    rope_factor: float = 32.0  # rope_scaling.factor
    # YaRN interpolates the frequencies that turn fewer than beta_slow times over the
    # original_max_position_embeddings positions the model was pretrained on (divided by factor),
    # keeps those turning more than beta_fast times, and ramps linearly between.
    rope_original_max_seq_len: int = 4096  # rope_scaling.original_max_position_embeddings
    rope_beta_fast: float = 32.0  # rope_scaling.beta_fast
    rope_beta_slow: float = 1.0  # rope_scaling.beta_slow
    # YaRN multiplies cos and sin by rope_scaling.attention_factor; without it, transformers infers
    # it from factor: 0.1 * mscale * ln(factor) + 1 over the same with mscale_all_dim where both are
    # set, else 0.1 * ln(factor) + 1 (1 for factor <= 1). This config gives none: 0.1 * ln(32.0) + 1
    # = 1.34657.
    rope_attention_factor: float = 1.3465735902799727  # rope_scaling.attention_factor
    # Layer i attends through a window of sliding_window tokens unless (i + 1) is a multiple of
    # sliding_window_pattern; those layers attend to the whole prefix (layer_types).
    sliding_window: int = 128  # sliding_window
    sliding_window_pattern: int = 2  # layer_types
    # The token whose embedding row gets no gradient (transformers' padding_idx); None: none.
    pad_token_id: int | None = 199999  # pad_token_id
    num_experts: int = 32  # num_local_experts
    top_k: int = 4  # num_experts_per_tok
    # The experts clamp gate above and up on both sides at swiglu_limit.
    swiglu_limit: float = 7.0  # swiglu_limit
    swiglu_alpha: float = 1.702  # swiglu_alpha: the sigmoid's gain in the SwiGLU
    router_aux_loss_coef: float = 0.9  # router_aux_loss_coef
    # Experts multiply with torch._grouped_mm where it applies; False: one expert after the other
    # (the reference, same values).
    use_grouped_mm: bool = True  # not in config.json
    initializer_range: float = 0.02  # initializer_range

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> ModelArgs:
        """Read a transformers config.json dict of this architecture, at any size.

        Accepts both rope styles: old (``rope_theta`` and ``rope_scaling``) and new
        (``rope_parameters``). Missing fields take GptOssConfig's defaults.
        """
        check_architecture(config)
        rope = rope_parameters(config)
        n_heads = config["num_attention_heads"]
        return cls(
            vocab_size=config["vocab_size"],
            dim=config["hidden_size"],
            n_layers=config["num_hidden_layers"],
            n_heads=n_heads,
            n_kv_heads=config.get("num_key_value_heads", 8) or n_heads,
            head_dim=config.get("head_dim", 64) or config["hidden_size"] // n_heads,
            ffn_dim=config["intermediate_size"],
            max_seq_len=config.get("max_position_embeddings", 131072),
            norm_eps=config.get("rms_norm_eps", 1e-05),
            rope_theta=rope["rope_theta"],
            rope_factor=rope["factor"],
            rope_original_max_seq_len=rope.get("original_max_position_embeddings")
            or config.get("max_position_embeddings", 131072),
            rope_beta_fast=rope.get("beta_fast") or 32.0,
            rope_beta_slow=rope.get("beta_slow") or 1.0,
            rope_attention_factor=yarn_attention_factor(rope),
            sliding_window=config.get("sliding_window", 128),
            sliding_window_pattern=sliding_window_pattern(config),
            pad_token_id=config.get("pad_token_id"),
            num_experts=config.get("num_local_experts", 128),
            top_k=config.get("num_experts_per_tok", 4),
            swiglu_limit=config.get("swiglu_limit", 7.0),
            swiglu_alpha=config.get("swiglu_alpha", 1.702),
            router_aux_loss_coef=config.get("router_aux_loss_coef", 0.001),
            initializer_range=config.get("initializer_range", 0.02),
        )

    def to_hf(self) -> dict[str, Any]:
        """The transformers config.json dict (GptOssConfig) for these args."""
        return {
            "architectures": ["GptOssForCausalLM"],
            "model_type": ARCHITECTURE["model_type"],
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
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
                "attention_factor": self.rope_attention_factor,
                "truncate": ARCHITECTURE["rope_truncate"],
            },
            "hidden_act": ARCHITECTURE["hidden_act"],
            "tie_word_embeddings": ARCHITECTURE["tie_word_embeddings"],
            "attention_bias": ARCHITECTURE["attention_bias"],
            "sliding_window": self.sliding_window,
            "layer_types": [
                "full_attention"
                if (i + 1) % self.sliding_window_pattern == 0
                else "sliding_attention"
                for i in range(self.n_layers)
            ],
            "pad_token_id": self.pad_token_id,
            "num_local_experts": self.num_experts,
            "num_experts_per_tok": self.top_k,
            "swiglu_limit": self.swiglu_limit,
            "swiglu_alpha": self.swiglu_alpha,
            "router_aux_loss_coef": self.router_aux_loss_coef,
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
        attention_flops = 6 * self.n_layers * self.n_heads * 2 * self.head_dim * seq_len
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
        "attention_bias": config.get("attention_bias", True),
        "sliding_window_attention": config.get("sliding_window", 128) is not None,
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
    level. Missing settings take GptOssConfig's defaults.
    """
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    if not params:
        # GptOssConfig's own rope when config.json states none.
        params = {
            "rope_type": "yarn",
            "factor": 32.0,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "truncate": False,
            "original_max_position_embeddings": 4096,
        }
    params.setdefault("rope_type", params.pop("type", "default"))
    params.setdefault("rope_theta", config.get("rope_theta", 150000.0))
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


def sliding_window_pattern(config: dict[str, Any]) -> int:
    """N where every Nth layer attends fully and the others through the sliding window.

    Read from ``layer_types`` when given; it must repeat that pattern. Without it, GptOssConfig
    builds layer_types with a period of 2.
    """
    layer_types = config.get("layer_types")
    if layer_types is None:
        return 2
    if "full_attention" not in layer_types:
        raise ValueError("config field layer_types has no full_attention layer")
    pattern = layer_types.index("full_attention") + 1
    expected = [
        "full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
        for i in range(len(layer_types))
    ]
    if layer_types != expected:
        raise ValueError(
            f"config field layer_types={layer_types!r} is not every {pattern}th layer full "
            "attention and the others sliding; this package cannot express that pattern"
        )
    return pattern
