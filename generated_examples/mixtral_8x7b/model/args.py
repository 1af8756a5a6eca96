"""Model arguments for mixtral_8x7b (MixtralForCausalLM).

Defaults are the full-size model read from its config.json. ``ModelArgs.from_hf`` maps the
transformers field names onto these; ``to_hf`` maps them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from runtime.protocols import BaseModelArgs

# Features fixed by this package's code. A config.json that differs in any of them describes a
# different architecture: regenerate the package instead of loading it here.
ARCHITECTURE: dict[str, Any] = {
    "model_type": "mixtral",
    "hidden_act": "silu",
    "rope_type": "default",
    "tie_word_embeddings": False,
    "sliding_window_attention": False,
}


@dataclass
class ModelArgs(BaseModelArgs):
    """Dimensions of the model; each comment names the config.json field."""

    vocab_size: int = 32000  # vocab_size
    dim: int = 4096  # hidden_size
    n_layers: int = 32  # num_hidden_layers
    n_heads: int = 32  # num_attention_heads
    n_kv_heads: int = 8  # num_key_value_heads
    head_dim: int = 128  # head_dim (hidden_size // num_attention_heads)
    ffn_dim: int = 14336  # intermediate_size
    max_seq_len: int = 32768  # max_position_embeddings
    norm_eps: float = 1e-05  # rms_norm_eps
    rope_theta: float = 1000000.0  # rope_theta
    num_experts: int = 8  # num_local_experts
    top_k: int = 2  # num_experts_per_tok
    router_aux_loss_coef: float = 0.02  # router_aux_loss_coef
    # Experts multiply with torch._grouped_mm where it applies; False: one expert after the other
    # (the reference, same values).
    use_grouped_mm: bool = True  # not in config.json
    initializer_range: float = 0.02  # initializer_range

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> ModelArgs:
        """Read a transformers config.json dict of this architecture, at any size.

        Accepts both rope styles: old (``rope_theta`` and ``rope_scaling``) and new
        (``rope_parameters``). Missing fields take MixtralConfig's defaults.
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
            head_dim=config.get("head_dim") or config["hidden_size"] // n_heads,
            ffn_dim=config["intermediate_size"],
            max_seq_len=config.get("max_position_embeddings", 131072),
            norm_eps=config.get("rms_norm_eps", 1e-05),
            rope_theta=rope["rope_theta"],
            num_experts=config.get("num_local_experts", 8),
            top_k=config.get("num_experts_per_tok", 2),
            router_aux_loss_coef=config.get("router_aux_loss_coef", 0.001),
            initializer_range=config.get("initializer_range", 0.02),
        )

    def to_hf(self) -> dict[str, Any]:
        """The transformers config.json dict (MixtralConfig) for these args."""
        return {
            "architectures": ["MixtralForCausalLM"],
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
            },
            "hidden_act": ARCHITECTURE["hidden_act"],
            "tie_word_embeddings": ARCHITECTURE["tie_word_embeddings"],
            "sliding_window": None,
            "num_local_experts": self.num_experts,
            "num_experts_per_tok": self.top_k,
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
        "tie_word_embeddings": config.get("tie_word_embeddings", False),
        "sliding_window_attention": config.get("sliding_window") is not None,
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
    level. Missing settings take MixtralConfig's defaults.
    """
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    params.setdefault("rope_type", params.pop("type", "default"))
    params.setdefault("rope_theta", config.get("rope_theta", 1000000.0))
    return params
