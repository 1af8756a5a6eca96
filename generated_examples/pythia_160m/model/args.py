"""Model arguments for pythia_160m (GPTNeoXForCausalLM).

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
    "model_type": "gpt_neox",
    "hidden_act": "gelu",
    "rope_type": "default",
    "tie_word_embeddings": False,
    "attention_bias": True,
    "use_parallel_residual": True,
    "partial_rotary": True,
}


@dataclass
class ModelArgs(BaseModelArgs):
    """Dimensions of the model; each comment names the config.json field."""

    vocab_size: int = 50304  # vocab_size
    dim: int = 768  # hidden_size
    n_layers: int = 12  # num_hidden_layers
    n_heads: int = 12  # num_attention_heads
    ffn_dim: int = 3072  # intermediate_size
    max_seq_len: int = 2048  # max_position_embeddings
    norm_eps: float = 1e-05  # layer_norm_eps
    rope_theta: float = 10000.0  # rope_theta (old configs: rotary_emb_base)
    # RoPE rotates the first int(head_dim * partial_rotary_factor) channels of each head.
    partial_rotary_factor: float = 0.25  # partial_rotary_factor (old configs: rotary_pct)
    initializer_range: float = 0.02  # initializer_range

    @property
    def head_dim(self) -> int:
        """hidden_size // num_attention_heads: GPTNeoXConfig has no separate head_dim."""
        return self.dim // self.n_heads

    @property
    def n_kv_heads(self) -> int:
        """Multi-head attention: every head has its own keys and values."""
        return self.n_heads

    @property
    def rotary_dim(self) -> int:
        """Channels of each head that RoPE rotates."""
        return int(self.head_dim * self.partial_rotary_factor)

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> ModelArgs:
        """Read a transformers config.json dict of this architecture, at any size.

        Accepts both rope styles: old (``rotary_emb_base``, ``rotary_pct`` and ``rope_scaling``) and
        new (``rope_parameters``). Missing fields take GPTNeoXConfig's defaults.
        """
        check_architecture(config)
        rope = rope_parameters(config)
        return cls(
            vocab_size=config["vocab_size"],
            dim=config["hidden_size"],
            n_layers=config["num_hidden_layers"],
            n_heads=config["num_attention_heads"],
            ffn_dim=config["intermediate_size"],
            max_seq_len=config.get("max_position_embeddings", 2048),
            norm_eps=config.get("layer_norm_eps", 1e-05),
            rope_theta=rope["rope_theta"],
            partial_rotary_factor=rope["partial_rotary_factor"],
            initializer_range=config.get("initializer_range", 0.02),
        )

    def to_hf(self) -> dict[str, Any]:
        """The transformers config.json dict (GPTNeoXConfig) for these args."""
        return {
            "architectures": ["GPTNeoXForCausalLM"],
            "model_type": ARCHITECTURE["model_type"],
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "intermediate_size": self.ffn_dim,
            "max_position_embeddings": self.max_seq_len,
            "layer_norm_eps": self.norm_eps,
            "rope_parameters": {
                "rope_type": ARCHITECTURE["rope_type"],
                "rope_theta": self.rope_theta,
                "partial_rotary_factor": self.partial_rotary_factor,
            },
            "hidden_act": ARCHITECTURE["hidden_act"],
            "tie_word_embeddings": ARCHITECTURE["tie_word_embeddings"],
            "attention_bias": ARCHITECTURE["attention_bias"],
            "use_parallel_residual": ARCHITECTURE["use_parallel_residual"],
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
        # The embedding table is a lookup, not a matmul.
        embedding_params = sum(p.numel() for p in model.tok_embeddings.parameters())
        matmul_params = nparams - embedding_params
        attention_flops = 6 * self.n_layers * self.n_heads * 2 * self.head_dim * seq_len
        return nparams, 6 * matmul_params + attention_flops


def check_architecture(config: dict[str, Any]) -> None:
    """Refuse a config.json whose features differ from the ones this package implements."""
    rope = rope_parameters(config)
    found = {
        "model_type": config.get("model_type"),
        "hidden_act": config.get("hidden_act", "gelu"),
        "rope_type": rope["rope_type"],
        "tie_word_embeddings": config.get("tie_word_embeddings", False),
        "attention_bias": config.get("attention_bias", True),
        "use_parallel_residual": config.get("use_parallel_residual", True),
        "partial_rotary": rope["partial_rotary_factor"] != 1.0,
    }
    for field, expected in ARCHITECTURE.items():
        if found[field] != expected:
            raise ValueError(
                f"config field {field}={found[field]!r} differs from this package's "
                f"{expected!r}; run `scaffold regenerate` with the new config"
            )


def rope_parameters(config: dict[str, Any]) -> dict[str, Any]:
    """The rope settings of a config.json in either style, as one dict.

    New style: ``rope_parameters``. Old style: ``rope_scaling``, with ``rotary_emb_base`` and
    ``rotary_pct`` at the top level. Missing settings take GPTNeoXConfig's defaults.
    """
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    params.setdefault("rope_type", params.pop("type", "default"))
    params.setdefault("rope_theta", config.get("rotary_emb_base", 10000.0))
    params.setdefault("partial_rotary_factor", config.get("rotary_pct", 0.25))
    return params
