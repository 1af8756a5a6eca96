"""Model arguments for gemma2_9b (Gemma2ForCausalLM).

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
    "model_type": "gemma2",
    "hidden_activation": "gelu_pytorch_tanh",
    "rope_type": "default",
    "tie_word_embeddings": True,
    "attention_bias": False,
    # "set": the package's code uses the field's value (in ModelArgs); None: it has no such step.
    "attn_logit_softcapping": "set",
    "final_logit_softcapping": "set",
    "sliding_window_attention": True,
}


@dataclass
class ModelArgs(BaseModelArgs):
    """Dimensions of the model; each comment names the config.json field."""

    vocab_size: int = 256000  # vocab_size
    dim: int = 3584  # hidden_size
    n_layers: int = 42  # num_hidden_layers
    n_heads: int = 16  # num_attention_heads
    n_kv_heads: int = 8  # num_key_value_heads
    head_dim: int = 256  # head_dim
    ffn_dim: int = 14336  # intermediate_size
    max_seq_len: int = 8192  # max_position_embeddings
    norm_eps: float = 1e-06  # rms_norm_eps
    rope_theta: float = 10000.0  # rope_theta
    # Layer i attends through a window of sliding_window tokens unless (i + 1) is a multiple of
    # sliding_window_pattern; those layers attend to the whole prefix (layer_types).
    sliding_window: int = 4096  # sliding_window
    sliding_window_pattern: int = 2  # layer_types
    # Attention scores scale by query_pre_attn_scalar ** -0.5 (not head_dim ** -0.5).
    query_pre_attn_scalar: int = 256  # query_pre_attn_scalar
    attn_logit_softcapping: float = 50.0  # attn_logit_softcapping
    final_logit_softcapping: float = 30.0  # final_logit_softcapping
    # The token whose embedding row gets no gradient (transformers' padding_idx); None: none.
    pad_token_id: int | None = 0  # pad_token_id
    initializer_range: float = 0.02  # initializer_range

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> ModelArgs:
        """Read a transformers config.json dict of this architecture, at any size.

        Accepts both rope styles: old (``rope_theta`` and ``rope_scaling``) and new
        (``rope_parameters``). Missing fields take Gemma2Config's defaults.
        """
        check_architecture(config)
        rope = rope_parameters(config)
        return cls(
            vocab_size=config["vocab_size"],
            dim=config["hidden_size"],
            n_layers=config["num_hidden_layers"],
            n_heads=config["num_attention_heads"],
            n_kv_heads=config["num_key_value_heads"],
            head_dim=config["head_dim"],
            ffn_dim=config["intermediate_size"],
            max_seq_len=config.get("max_position_embeddings", 8192),
            norm_eps=config.get("rms_norm_eps", 1e-06),
            rope_theta=rope["rope_theta"],
            sliding_window=config.get("sliding_window", 4096),
            sliding_window_pattern=sliding_window_pattern(config),
            query_pre_attn_scalar=config.get("query_pre_attn_scalar", 256),
            attn_logit_softcapping=config.get("attn_logit_softcapping", 50.0),
            final_logit_softcapping=config.get("final_logit_softcapping", 30.0),
            pad_token_id=config.get("pad_token_id", 0),
            initializer_range=config.get("initializer_range", 0.02),
        )

    def to_hf(self) -> dict[str, Any]:
        """The transformers config.json dict (Gemma2Config) for these args."""
        return {
            "architectures": ["Gemma2ForCausalLM"],
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
            "hidden_activation": ARCHITECTURE["hidden_activation"],
            "tie_word_embeddings": ARCHITECTURE["tie_word_embeddings"],
            "attention_bias": ARCHITECTURE["attention_bias"],
            "sliding_window": self.sliding_window,
            "layer_types": [
                "full_attention"
                if (i + 1) % self.sliding_window_pattern == 0
                else "sliding_attention"
                for i in range(self.n_layers)
            ],
            "query_pre_attn_scalar": self.query_pre_attn_scalar,
            "attn_logit_softcapping": self.attn_logit_softcapping,
            "final_logit_softcapping": self.final_logit_softcapping,
            "pad_token_id": self.pad_token_id,
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
        attention_flops = 6 * self.n_layers * self.n_heads * 2 * self.head_dim * seq_len
        return nparams, 6 * matmul_params + attention_flops


def check_architecture(config: dict[str, Any]) -> None:
    """Refuse a config.json whose features differ from the ones this package implements."""
    rope = rope_parameters(config)
    found = {
        "model_type": config.get("model_type"),
        "hidden_activation": config.get("hidden_activation", "gelu_pytorch_tanh"),
        "rope_type": rope["rope_type"],
        "tie_word_embeddings": config.get("tie_word_embeddings", True),
        "attention_bias": config.get("attention_bias", False),
        "attn_logit_softcapping": is_set(config.get("attn_logit_softcapping", 50.0)),
        "final_logit_softcapping": is_set(config.get("final_logit_softcapping", 30.0)),
        "sliding_window_attention": config.get("sliding_window", 4096) is not None,
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
    level. Missing settings take Gemma2Config's defaults.
    """
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    params.setdefault("rope_type", params.pop("type", "default"))
    params.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    return params


def sliding_window_pattern(config: dict[str, Any]) -> int:
    """N where every Nth layer attends fully and the others through the sliding window.

    Read from ``layer_types`` when given; it must repeat that pattern. Without it, Gemma2Config
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


def is_set(value: Any) -> str | None:
    """ARCHITECTURE's marker for a config value: "set", or None for null."""
    return None if value is None else "set"
