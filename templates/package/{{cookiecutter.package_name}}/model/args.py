{%- set s = cookiecutter.spec -%}
{#- Families whose config.json names or layout differ from Llama's render their own args.py. -#}
{%- if s.parts.args is defined -%}
{% include 'parts/args/' ~ s.parts.args ~ '.py.j2' %}
{%- else -%}
{#- The bias switches this family's config class has (Mistral and Qwen2 have neither). -#}
{%- set bias_fields = s.features.get("bias_fields", ["attention_bias", "mlp_bias"]) -%}
{%- set sliding = s.features.get("sliding_window") is not none -%}
{%- set f = s.features -%}
{%- set longrope = s.rope.type == "longrope" -%}
{%- set granite = f.get("embedding_multiplier") is not none -%}
"""Model arguments for {{ cookiecutter.display_name }} ({{ s.hf_architecture }}).

Defaults are the full-size model read from its config.json. ``ModelArgs.from_hf`` maps the
transformers field names onto these; ``to_hf`` maps them back.
"""

from __future__ import annotations

{%- if longrope %}
import math
{%- endif %}
from dataclasses import dataclass
from typing import Any

from torch import nn

from runtime.protocols import BaseModelArgs

# Features fixed by this package's code. A config.json that differs in any of them describes a
# different architecture: regenerate the package instead of loading it here.
ARCHITECTURE: dict[str, Any] = {
    "model_type": {{ s.model_type | py }},
    "hidden_act": {{ s.hidden_act | py }},
    "rope_type": {{ s.rope.type | py }},
    "tie_word_embeddings": {{ s.tie_word_embeddings | py }},
{%- if "attention_bias" in bias_fields %}
    "attention_bias": {{ s.attention_bias | py }},
{%- endif %}
{%- if "mlp_bias" in bias_fields %}
    "mlp_bias": {{ s.mlp_bias | py }},
{%- endif %}
{%- if "sliding_window" in s.features %}
    "sliding_window_attention": {{ sliding | py }},
{%- endif %}
{%- if "partial_rotary" in f %}
    "partial_rotary": {{ (f.partial_rotary is not none) | py }},
{%- endif %}
{%- if f.get("embedding_padding_idx") %}
    "embedding_padding_idx": True,
{%- endif %}
}


@dataclass
class ModelArgs(BaseModelArgs):
    """Dimensions of the model; each comment names the config.json field."""

    vocab_size: int = {{ s.vocab_size | py }}  # vocab_size
    dim: int = {{ s.dim | py }}  # hidden_size
    n_layers: int = {{ s.n_layers | py }}  # num_hidden_layers
    n_heads: int = {{ s.n_heads | py }}  # num_attention_heads
    n_kv_heads: int = {{ s.n_kv_heads | py }}  # num_key_value_heads
    head_dim: int = {{ s.head_dim | py }}  # head_dim{% if not s.explicit_head_dim %} (hidden_size // num_attention_heads){% endif %}
    ffn_dim: int = {{ s.ffn_dim | py }}  # intermediate_size
    max_seq_len: int = {{ s.max_seq_len | py }}  # max_position_embeddings
    norm_eps: float = {{ s.norm_eps | py }}  # rms_norm_eps
    rope_theta: float = {{ s.rope.theta | py }}  # rope_theta
{%- if s.rope.type in ("linear", "dynamic", "llama3") %}
    rope_factor: float = {{ s.rope.factor | py }}  # rope_scaling.factor
{%- endif %}
{%- if s.rope.type == "llama3" %}
    rope_low_freq_factor: float = {{ s.rope.low_freq_factor | py }}  # rope_scaling.low_freq_factor
    rope_high_freq_factor: float = {{ s.rope.high_freq_factor | py }}  # rope_scaling.high_freq_factor
    rope_original_max_seq_len: int = {{ s.rope.original_max_position_embeddings | py }}  # rope_scaling.original_max_position_embeddings
{%- endif %}
{%- if sliding %}
    # sliding_window: a query attends to itself and the sliding_window - 1 tokens before it
{%- if s.features.sliding_window_layers == "from_max_window_layers" %}
    # in layers max_window_layers and up (use_sliding_window); the layers below attend fully.
    sliding_window: int = {{ s.features.sliding_window.window | py }}  # sliding_window
    max_window_layers: int = {{ s.features.max_window_layers | py }}  # max_window_layers
{%- else %}
    # in every layer.
    sliding_window: int = {{ s.features.sliding_window.window | py }}  # sliding_window
{%- endif %}
{%- endif %}
{%- if longrope %}
    # rope_scaling "longrope": frequencies divided by one factor each, short_factor for sequences
    # up to original_max_position_embeddings, long_factor (at every position) for longer ones;
    # cos and sin are scaled by attention_factor.
    rope_original_max_seq_len: int = {{ s.rope.original_max_position_embeddings | py }}  # original_max_position_embeddings
    rope_short_factor: tuple[float, ...] = {{ f.rope_short_factor | py }}  # rope_scaling.short_factor
    rope_long_factor: tuple[float, ...] = {{ f.rope_long_factor | py }}  # rope_scaling.long_factor
    rope_attention_factor: float = {{ f.rope_attention_factor | py }}  # rope_scaling.attention_factor
{%- endif %}
{%- if f.get("partial_rotary_factor") %}
    # partial_rotary_factor: RoPE rotates the first int(head_dim * it) channels of each head.
    partial_rotary_factor: float = {{ f.partial_rotary_factor | py }}  # partial_rotary_factor
{%- endif %}
{%- if granite %}
    embedding_multiplier: float = {{ f.embedding_multiplier | py }}  # embedding_multiplier: scales the embeddings
    residual_multiplier: float = {{ f.residual_multiplier | py }}  # residual_multiplier: scales sublayer outputs
    attention_multiplier: float = {{ f.attention_multiplier | py }}  # attention_multiplier: the softmax scale
    logits_scaling: float = {{ f.logits_scaling | py }}  # logits_scaling: logits are divided by it
{%- endif %}
{%- if f.get("embedding_padding_idx") %}
    pad_token_id: int = {{ f.pad_token_id | py }}  # pad_token_id: its embedding row gets no gradient
{%- endif %}
{%- if f.get("attention_dropout") %}
    attention_dropout: float = {{ f.attention_dropout | py }}  # attention_dropout (training only)
{%- endif %}
    initializer_range: float = {{ s.initializer_range | py }}  # initializer_range
{%- if f.get("partial_rotary_factor") %}

    @property
    def rotary_dim(self) -> int:
        """Channels of each head that RoPE rotates."""
        return int(self.head_dim * self.partial_rotary_factor)
{%- endif %}

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> ModelArgs:
        """Read a transformers config.json dict of this architecture, at any size.

        Accepts both rope styles: old (``rope_theta`` + ``rope_scaling``) and new
        (``rope_parameters``). Missing fields take transformers' defaults.
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
            max_seq_len=config.get("max_position_embeddings", 2048),
            norm_eps=config.get("rms_norm_eps", 1e-6),
            rope_theta=rope.get("rope_theta", 10000.0),
{%- if s.rope.type in ("linear", "dynamic", "llama3") %}
            rope_factor=rope["factor"],
{%- endif %}
{%- if s.rope.type == "llama3" %}
            rope_low_freq_factor=rope["low_freq_factor"],
            rope_high_freq_factor=rope["high_freq_factor"],
            rope_original_max_seq_len=rope["original_max_position_embeddings"],
{%- endif %}
{%- if sliding %}
            sliding_window=sliding_window(config),
{%- if s.features.sliding_window_layers == "from_max_window_layers" %}
            max_window_layers=max_window_layers(config),
{%- endif %}
{%- endif %}
{%- if longrope %}
            rope_original_max_seq_len=original_max_position_embeddings(config),
            rope_short_factor=tuple(rope["short_factor"]),
            rope_long_factor=tuple(rope["long_factor"]),
            rope_attention_factor=longrope_attention_factor(config, rope),
{%- endif %}
{%- if f.get("partial_rotary_factor") %}
            partial_rotary_factor=partial_rotary_factor(config),
{%- endif %}
{%- if granite %}
            embedding_multiplier=config.get("embedding_multiplier", 1.0),
            residual_multiplier=config.get("residual_multiplier", 1.0),
            attention_multiplier=config.get("attention_multiplier", 1.0),
            logits_scaling=config.get("logits_scaling", 1.0),
{%- endif %}
{%- if f.get("embedding_padding_idx") %}
            pad_token_id=config.get("pad_token_id", {{ f.get("pad_token_id_default") | py }}),
{%- endif %}
{%- if f.get("attention_dropout") %}
            attention_dropout=config.get("attention_dropout", 0.0),
{%- endif %}
            initializer_range=config.get("initializer_range", 0.02),
        )

    def to_hf(self) -> dict[str, Any]:
        """The transformers config.json dict ({{ s.hf_config_class }}) for these args."""
        return {
            "architectures": [{{ s.hf_architecture | py }}],
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
{%- if s.rope.type in ("linear", "dynamic", "llama3") %}
                "factor": self.rope_factor,
{%- endif %}
{%- if s.rope.type == "llama3" %}
                "low_freq_factor": self.rope_low_freq_factor,
                "high_freq_factor": self.rope_high_freq_factor,
                "original_max_position_embeddings": self.rope_original_max_seq_len,
{%- endif %}
{%- if longrope %}
                "short_factor": list(self.rope_short_factor),
                "long_factor": list(self.rope_long_factor),
                "attention_factor": self.rope_attention_factor,
                "original_max_position_embeddings": self.rope_original_max_seq_len,
{%- endif %}
{%- if f.get("partial_rotary_factor") %}
                "partial_rotary_factor": self.partial_rotary_factor,
{%- endif %}
            },
{%- if longrope %}
            # Phi3Config takes this one over rope_parameters' (and defaults it to 4096).
            "original_max_position_embeddings": self.rope_original_max_seq_len,
{%- endif %}
{%- if f.get("partial_rotary_factor") %}
            "partial_rotary_factor": self.partial_rotary_factor,
{%- endif %}
            "hidden_act": ARCHITECTURE["hidden_act"],
            "tie_word_embeddings": ARCHITECTURE["tie_word_embeddings"],
{%- if "attention_bias" in bias_fields %}
            "attention_bias": ARCHITECTURE["attention_bias"],
{%- endif %}
{%- if "mlp_bias" in bias_fields %}
            "mlp_bias": ARCHITECTURE["mlp_bias"],
{%- endif %}
{%- if sliding and s.features.sliding_window_layers == "from_max_window_layers" %}
            "use_sliding_window": True,
            "sliding_window": self.sliding_window,
            "max_window_layers": self.max_window_layers,
            # Explicit, so a base config.json's layer_types for other sizes cannot stand.
            "layer_types": [
                "sliding_attention" if layer_id >= self.max_window_layers else "full_attention"
                for layer_id in range(self.n_layers)
            ],
{%- elif sliding %}
            "sliding_window": self.sliding_window,
{%- elif "sliding_window" in s.features and s.features.sliding_window_layers == "from_max_window_layers" %}
            "use_sliding_window": False,
            "layer_types": ["full_attention"] * self.n_layers,
{%- elif "sliding_window" in s.features %}
            "sliding_window": None,
{%- endif %}
{%- if granite %}
            "embedding_multiplier": self.embedding_multiplier,
            "residual_multiplier": self.residual_multiplier,
            "attention_multiplier": self.attention_multiplier,
            "logits_scaling": self.logits_scaling,
{%- endif %}
{%- if f.get("attention_dropout") %}
            "attention_dropout": self.attention_dropout,
{%- endif %}
{%- if f.get("embedding_padding_idx") %}
            "pad_token_id": self.pad_token_id,
{%- elif f.get("pad_token_id_default") is not none %}
            "pad_token_id": None,  # {{ s.hf_config_class }} would default it to {{ f.pad_token_id_default | py }}
{%- endif %}
            "initializer_range": self.initializer_range,
        }

    def update_from_config(self, job_config: Any, **kwargs: Any) -> None:
        """Check the training sequence length against the model's positions."""
        seq_len = job_config.training.seq_len
{%- if s.rope.type == "dynamic" %}
        # Dynamic NTK RoPE stretches past max_position_embeddings, so longer sequences are allowed.
        del seq_len
{%- else %}
        if seq_len > self.max_seq_len:
            raise ValueError(
                f"training.seq_len ({seq_len}) exceeds max_position_embeddings "
                f"({self.max_seq_len}) of this model"
            )
{%- endif %}

    def get_nparams_and_flops(self, model: nn.Module, seq_len: int) -> tuple[int, int]:
        """Parameter count and training FLOPs per token.

        FLOPs follow torchtitan: 6 x (matmul parameters) + 6 x layers x heads x 2 x head_dim x
        seq_len for attention scores and values.
        """
        nparams = sum(p.numel() for p in model.parameters())
{%- if s.tie_word_embeddings %}
        # Embeddings are tied to the output projection, whose matmul counts: keep them all.
        matmul_params = nparams
{%- else %}
        # The embedding table is a lookup, not a matmul.
        embedding_params = sum(p.numel() for p in model.tok_embeddings.parameters())
        matmul_params = nparams - embedding_params
{%- endif %}
        attention_flops = 6 * self.n_layers * self.n_heads * 2 * self.head_dim * seq_len
        return nparams, 6 * matmul_params + attention_flops


def rope_parameters(config: dict[str, Any]) -> dict[str, Any]:
    """The rope settings of a config.json in either style, as one dict with ``rope_type``."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    if "type" in params and "rope_type" not in params:
        params["rope_type"] = params.pop("type")
    params.setdefault("rope_type", "default")
{%- if f.get("longrope_aliases") %}
    # {{ s.hf_config_class }} reads the old rope type names {{ f.longrope_aliases | join(" and ") }} as "longrope".
    if params["rope_type"] in {{ f.longrope_aliases | py }}:
        params["rope_type"] = "longrope"
{%- endif %}
    if "rope_theta" not in params and "rope_theta" in config:
        params["rope_theta"] = config["rope_theta"]
    return params


def check_architecture(config: dict[str, Any]) -> None:
    """Refuse a config.json whose features differ from the ones this package implements."""
    found = {
        "model_type": config.get("model_type"),
        "hidden_act": config.get("hidden_act", "silu"),
        "rope_type": rope_parameters(config)["rope_type"],
        "tie_word_embeddings": config.get("tie_word_embeddings", False),
{%- if "attention_bias" in bias_fields %}
        "attention_bias": config.get("attention_bias", False),
{%- endif %}
{%- if "mlp_bias" in bias_fields %}
        "mlp_bias": config.get("mlp_bias", False),
{%- endif %}
{%- if "sliding_window" in s.features and s.features.sliding_window_layers == "from_max_window_layers" %}
        "sliding_window_attention": sliding_window(config) is not None
        and max_window_layers(config) < config["num_hidden_layers"],
{%- elif "sliding_window" in s.features %}
        "sliding_window_attention": sliding_window(config) is not None,
{%- endif %}
{%- if "partial_rotary" in f %}
        "partial_rotary": partial_rotary_factor(config) != 1.0,
{%- endif %}
{%- if f.get("embedding_padding_idx") %}
        "embedding_padding_idx": config.get("pad_token_id", {{ f.get("pad_token_id_default") | py }})
        is not None,
{%- endif %}
    }
    for field, expected in ARCHITECTURE.items():
        if found[field] != expected:
            raise ValueError(
                f"config field {field}={found[field]!r} differs from this package's "
                f"{expected!r}; run `scaffold regenerate` with the new config"
            )
{%- if "sliding_window" in s.features %}


def sliding_window(config: dict[str, Any]) -> int | None:
{%- if s.features.sliding_window_layers == "from_max_window_layers" %}
    """The attention window in tokens; None unless use_sliding_window is true."""
    if not config.get("use_sliding_window", False):
        return None
    return config.get("sliding_window", {{ s.features.sliding_window_default | py }})


def max_window_layers(config: dict[str, Any]) -> int:
    """The first sliding layer: ``layer_types`` when given, else ``max_window_layers``.

    transformers slides layers ``max_window_layers`` and up, so ``layer_types`` must list full
    attention layers first and sliding ones after them.
    """
    layer_types = config.get("layer_types")
    if layer_types is None:
        return config.get("max_window_layers", {{ s.features.max_window_layers_default | py }})
    first = layer_types.index("sliding_attention") if "sliding_attention" in layer_types else len(layer_types)
    expected = ["full_attention"] * first + ["sliding_attention"] * (len(layer_types) - first)
    if layer_types != expected:
        raise ValueError(
            f"config field layer_types={layer_types!r} is not full attention layers followed by "
            "sliding ones; this package cannot express that pattern"
        )
    return first
{%- else %}
{%- if s.features.sliding_window_default is none %}
    """The attention window of every layer in tokens (sliding_window); None: full attention."""
    return config.get("sliding_window")
{%- else %}
    """The attention window of every layer in tokens (sliding_window); None: full attention.

    A config.json without the field gets {{ s.hf_config_class }}'s default, {{ s.features.sliding_window_default | py }}.
    """
    return config.get("sliding_window", {{ s.features.sliding_window_default | py }})
{%- endif %}
{%- endif %}
{%- endif %}
{%- if "partial_rotary" in f %}


def partial_rotary_factor(config: dict[str, Any]) -> float:
    """partial_rotary_factor, from rope_parameters (new style) or the top level (old style)."""
    return rope_parameters(config).get(
        "partial_rotary_factor", config.get("partial_rotary_factor", 1.0)
    )
{%- endif %}
{%- if longrope %}


def original_max_position_embeddings(config: dict[str, Any]) -> int:
    """The pretraining length LongRoPE switches factors at.

    {{ s.hf_config_class }} takes the top-level field over rope_scaling's and defaults it to
    {{ f.original_max_position_embeddings_default | py }}.
    """
    return config.get(
        "original_max_position_embeddings", {{ f.original_max_position_embeddings_default | py }}
    )


def longrope_attention_factor(config: dict[str, Any], rope: dict[str, Any]) -> float:
    """rope_scaling.attention_factor, else transformers' default for LongRoPE.

    The default grows with the context extension ``factor`` (rope_scaling.factor, else
    max_position_embeddings / original_max_position_embeddings):
    ``sqrt(1 + ln(factor) / ln(original_max_position_embeddings))``, 1 when not extended.
    """
    if rope.get("attention_factor") is not None:
        return rope["attention_factor"]
    original = original_max_position_embeddings(config)
    factor = rope.get("factor")
    if factor is None:
        factor = config.get("max_position_embeddings", 4096) / original
    if factor <= 1.0:
        return 1.0
    return math.sqrt(1 + math.log(factor) / math.log(original))
{%- endif %}

{%- endif %}
