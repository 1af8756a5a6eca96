"""Model arguments for gpt2 (GPT2LMHeadModel).

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
    "model_type": "gpt2",
    "activation_function": "gelu_new",
    "tie_word_embeddings": True,
    "scale_attn_weights": True,
}


@dataclass
class ModelArgs(BaseModelArgs):
    """Dimensions of the model; each comment names the config.json field."""

    vocab_size: int = 50257  # vocab_size
    dim: int = 768  # n_embd
    n_layers: int = 12  # n_layer
    n_heads: int = 12  # n_head
    ffn_dim: int = 3072  # n_inner (null: 4 * n_embd)
    max_seq_len: int = 1024  # n_positions: rows of the learned position table
    norm_eps: float = 1e-05  # layer_norm_epsilon
    initializer_range: float = 0.02  # initializer_range

    @property
    def head_dim(self) -> int:
        """n_embd // n_head: GPT2Config has no separate head_dim."""
        return self.dim // self.n_heads

    @property
    def n_kv_heads(self) -> int:
        """Multi-head attention: every head has its own keys and values."""
        return self.n_heads

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> ModelArgs:
        """Read a transformers config.json dict of this architecture, at any size.

        Missing fields take GPT2Config's defaults.
        """
        check_architecture(config)
        return cls(
            vocab_size=config["vocab_size"],
            dim=config["n_embd"],
            n_layers=config["n_layer"],
            n_heads=config["n_head"],
            ffn_dim=config.get("n_inner") or 4 * config["n_embd"],
            max_seq_len=config.get("n_positions", 1024),
            norm_eps=config.get("layer_norm_epsilon", 1e-05),
            initializer_range=config.get("initializer_range", 0.02),
        )

    def to_hf(self) -> dict[str, Any]:
        """The transformers config.json dict (GPT2Config) for these args."""
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": ARCHITECTURE["model_type"],
            "vocab_size": self.vocab_size,
            "n_embd": self.dim,
            "n_layer": self.n_layers,
            "n_head": self.n_heads,
            "n_inner": self.ffn_dim,
            "n_positions": self.max_seq_len,
            "layer_norm_epsilon": self.norm_eps,
            "activation_function": ARCHITECTURE["activation_function"],
            "tie_word_embeddings": ARCHITECTURE["tie_word_embeddings"],
            "scale_attn_weights": ARCHITECTURE["scale_attn_weights"],
            # The model trains without dropout; GPT2Config would default each to 0.1.
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
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
        # Embeddings are tied to the output projection, whose matmul counts: keep them all.
        matmul_params = nparams
        # The learned position table is a lookup too.
        matmul_params -= sum(p.numel() for p in model.pos_embeddings.parameters())
        attention_flops = 6 * self.n_layers * self.n_heads * 2 * self.head_dim * seq_len
        return nparams, 6 * matmul_params + attention_flops


def check_architecture(config: dict[str, Any]) -> None:
    """Refuse a config.json whose features differ from the ones this package implements."""
    found = {
        "model_type": config.get("model_type"),
        "activation_function": config.get("activation_function", "gelu_new"),
        "tie_word_embeddings": config.get("tie_word_embeddings", True),
        "scale_attn_weights": config.get("scale_attn_weights", True),
    }
    for field, expected in ARCHITECTURE.items():
        if found[field] != expected:
            raise ValueError(
                f"config field {field}={found[field]!r} differs from this package's "
                f"{expected!r}; run `scaffold regenerate` with the new config"
            )
