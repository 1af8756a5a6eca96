"""Model arguments for phi_3_5_mini_instruct (Phi3ForCausalLM).

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
    "model_type": "phi3",
    "hidden_act": "silu",
    "rope_type": "longrope",
    "tie_word_embeddings": False,
    "sliding_window_attention": True,
    "partial_rotary": False,
}


@dataclass
class ModelArgs(BaseModelArgs):
    """Dimensions of the model; each comment names the config.json field."""

    vocab_size: int = 32064  # vocab_size
    dim: int = 3072  # hidden_size
    n_layers: int = 32  # num_hidden_layers
    n_heads: int = 32  # num_attention_heads
    n_kv_heads: int = 32  # num_key_value_heads
    head_dim: int = 96  # head_dim (hidden_size // num_attention_heads)
    ffn_dim: int = 8192  # intermediate_size
    max_seq_len: int = 131072  # max_position_embeddings
    norm_eps: float = 1e-05  # rms_norm_eps
    rope_theta: float = 10000.0  # rope_theta
    # rope_scaling "longrope": frequencies divided by one factor each, short_factor for sequences up
    # to original_max_position_embeddings, long_factor (at every position) for longer ones; cos and
    # sin are scaled by attention_factor.
    rope_original_max_seq_len: int = 4096  # original_max_position_embeddings
    rope_short_factor: tuple[float, ...] = (
        1.0,
        1.0199999809265137,
        1.0299999713897705,
        1.0299999713897705,
        1.0499999523162842,
        1.0499999523162842,
        1.0499999523162842,
        1.0499999523162842,
        1.0499999523162842,
        1.0699999332427979,
        1.0999999046325684,
        1.1099998950958252,
        1.1599998474121094,
        1.1599998474121094,
        1.1699998378753662,
        1.2899998426437378,
        1.339999794960022,
        1.679999828338623,
        1.7899998426437378,
        1.8199998140335083,
        1.8499997854232788,
        1.8799997568130493,
        1.9099997282028198,
        1.9399996995925903,
        1.9899996519088745,
        2.0199997425079346,
        2.0199997425079346,
        2.0199997425079346,
        2.0199997425079346,
        2.0199997425079346,
        2.0199997425079346,
        2.0299997329711914,
        2.0299997329711914,
        2.0299997329711914,
        2.0299997329711914,
        2.0299997329711914,
        2.0299997329711914,
        2.0299997329711914,
        2.0299997329711914,
        2.0299997329711914,
        2.0799996852874756,
        2.0899996757507324,
        2.189999580383301,
        2.2199995517730713,
        2.5899994373321533,
        2.729999542236328,
        2.749999523162842,
        2.8399994373321533,
    )  # rope_scaling.short_factor
    rope_long_factor: tuple[float, ...] = (
        1.0800000429153442,
        1.1100000143051147,
        1.1399999856948853,
        1.340000033378601,
        1.5899999141693115,
        1.600000023841858,
        1.6200000047683716,
        2.620000123977661,
        3.2300000190734863,
        3.2300000190734863,
        4.789999961853027,
        7.400000095367432,
        7.700000286102295,
        9.09000015258789,
        12.199999809265137,
        17.670000076293945,
        24.46000099182129,
        28.57000160217285,
        30.420001983642578,
        30.840002059936523,
        32.590003967285156,
        32.93000411987305,
        42.320003509521484,
        44.96000289916992,
        50.340003967285156,
        50.45000457763672,
        57.55000305175781,
        57.93000411987305,
        58.21000289916992,
        60.1400032043457,
        62.61000442504883,
        62.62000274658203,
        62.71000289916992,
        63.1400032043457,
        63.1400032043457,
        63.77000427246094,
        63.93000411987305,
        63.96000289916992,
        63.970001220703125,
        64.02999877929688,
        64.06999969482422,
        64.08000183105469,
        64.12000274658203,
        64.41000366210938,
        64.4800033569336,
        64.51000213623047,
        64.52999877929688,
        64.83999633789062,
    )  # rope_scaling.long_factor
    rope_attention_factor: float = 1.1902380714238083  # rope_scaling.attention_factor
    # sliding_window: a query attends to itself and the sliding_window - 1 tokens before it, in
    # every layer.
    sliding_window: int = 262144  # sliding_window
    # The token whose embedding row gets no gradient (transformers' padding_idx); None: none.
    pad_token_id: int | None = 32000  # pad_token_id
    initializer_range: float = 0.02  # initializer_range

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> ModelArgs:
        """Read a transformers config.json dict of this architecture, at any size.

        Accepts both rope styles: old (``rope_theta``, ``partial_rotary_factor`` and
        ``rope_scaling``) and new (``rope_parameters``). Missing fields take Phi3Config's defaults.
        """
        check_architecture(config)
        rope = rope_parameters(config)
        n_heads = config["num_attention_heads"]
        return cls(
            vocab_size=config["vocab_size"],
            dim=config["hidden_size"],
            n_layers=config["num_hidden_layers"],
            n_heads=n_heads,
            n_kv_heads=config.get("num_key_value_heads") or n_heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // n_heads,
            ffn_dim=config["intermediate_size"],
            max_seq_len=config.get("max_position_embeddings", 4096),
            norm_eps=config.get("rms_norm_eps", 1e-05),
            rope_theta=rope["rope_theta"],
            rope_original_max_seq_len=config.get("original_max_position_embeddings", 4096),
            rope_short_factor=tuple(rope["short_factor"]),
            rope_long_factor=tuple(rope["long_factor"]),
            rope_attention_factor=longrope_attention_factor(config, rope),
            sliding_window=config.get("sliding_window"),
            pad_token_id=config.get("pad_token_id", 32000),
            initializer_range=config.get("initializer_range", 0.02),
        )

    def to_hf(self) -> dict[str, Any]:
        """The transformers config.json dict (Phi3Config) for these args."""
        return {
            "architectures": ["Phi3ForCausalLM"],
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
                "short_factor": list(self.rope_short_factor),
                "long_factor": list(self.rope_long_factor),
                "attention_factor": self.rope_attention_factor,
                "original_max_position_embeddings": self.rope_original_max_seq_len,
            },
            # Phi3Config takes this one over rope_parameters' (and defaults it to 4096).
            "original_max_position_embeddings": self.rope_original_max_seq_len,
            "hidden_act": ARCHITECTURE["hidden_act"],
            "tie_word_embeddings": ARCHITECTURE["tie_word_embeddings"],
            "sliding_window": self.sliding_window,
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
        "hidden_act": config.get("hidden_act", "silu"),
        "rope_type": rope["rope_type"],
        "tie_word_embeddings": config.get("tie_word_embeddings", False),
        "sliding_window_attention": config.get("sliding_window") is not None,
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

    New style: ``rope_parameters``. Old style: ``rope_scaling``, with ``rope_theta`` and
    ``partial_rotary_factor`` at the top level. Missing settings take Phi3Config's defaults.
    """
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    params.setdefault("rope_type", params.pop("type", "default"))
    # Phi3Config reads the old rope type names su and yarn as "longrope".
    if params["rope_type"] in ("su", "yarn"):
        params["rope_type"] = "longrope"
    params.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    params.setdefault("partial_rotary_factor", config.get("partial_rotary_factor", 1.0))
    return params


def longrope_attention_factor(config: dict[str, Any], rope: dict[str, Any]) -> float:
    """rope_scaling.attention_factor, else transformers' default for LongRoPE.

    The default grows with the context extension ``factor`` (rope_scaling.factor, else
    max_position_embeddings / original_max_position_embeddings):
    ``sqrt(1 + ln(factor) / ln(original_max_position_embeddings))``, 1 when not extended.
    """
    if rope.get("attention_factor") is not None:
        return rope["attention_factor"]
    original = config.get("original_max_position_embeddings", 4096)
    factor = rope.get("factor")
    if factor is None:
        factor = config.get("max_position_embeddings", 4096) / original
    if factor <= 1.0:
        return 1.0
    return math.sqrt(1 + math.log(factor) / math.log(original))
