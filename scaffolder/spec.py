"""The normalized architecture spec: dimensions plus explicit feature switches.

A family recipe (``scaffolder/families/<family>.py``) turns a config.json dict into an
:class:`ArchSpec`; templates only ever see ``ArchSpec.to_context()``, whose values are validated
numbers, booleans and known names.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import logging
from dataclasses import dataclass, field, fields
from typing import Any

from scaffolder import cache
from scaffolder.config_fields import ConfigFields
from scaffolder.errors import ConfigFieldError, ScaffoldError
from scaffolder.features import Features
from scaffolder.fields import read_choice, read_int

ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn")
DEFAULT_PARTS = {
    "rope": "rope",
    "attention": "attention",
    "feed_forward": "feed_forward_swiglu",
    "block": "block_pre_norm",
    "transformer": "transformer",
}
DTYPES = ("float32", "bfloat16", "float16")
# ArchSpec.debug_dims' vocabulary size, layers and longest sliding window (shorter than the
# generated tests' sequences, so they see it slide).
DEBUG_VOCAB_SIZE = 2048
DEBUG_LAYERS = 4
DEBUG_SLIDING_WINDOW = 16
DEBUG_EXPERTS = 8


@dataclass(frozen=True)
class RopeSpec:
    """Rotary embedding settings as transformers resolves them (``rope_parameters``)."""

    type: str
    theta: float
    factor: float | None = None
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    original_max_position_embeddings: int | None = None
    # YaRN (type "yarn"): the ramp's rotation bounds, transformers' defaults filled in; mscale
    # and mscale_all_dim as the config gives them (None: not given); attention_factor, the scale
    # of cos and sin, as given or as transformers infers it (attention_factor_inferred);
    # truncate: whether the ramp's bounds are rounded to whole dimensions.
    beta_fast: float | None = None
    beta_slow: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None
    attention_factor_inferred: bool | None = None
    truncate: bool | None = None


@dataclass(frozen=True)
class ArchSpec:
    """A decoder-only architecture, normalized.

    Field names follow the generated ``ModelArgs``; the docstring of each recipe names the
    config.json field each one comes from.
    """

    family: str
    model_type: str
    hf_architecture: str
    hf_config_class: str
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    max_seq_len: int
    norm_eps: float
    rope: RopeSpec | None  # None: no rotary embedding (learned absolute positions)
    tie_word_embeddings: bool
    attention_bias: bool
    mlp_bias: bool
    hidden_act: str
    initializer_range: float
    torch_dtype: str
    # How the family's config class names and defaults the fields ModelArgs reads.
    config_fields: ConfigFields
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    # Which template part renders each piece of model.py (parts/model/<name>.py.j2).
    parts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PARTS))
    # What the family adds to the dimensions above (typed, validated; scaffolder/features.py).
    features: Features = field(default_factory=Features)
    # Values the debug flavor sets beyond debug_dims' own (e.g. LongRoPE factors resampled to
    # its head_dim); the recipe computes them from the debug dimensions.
    debug_extra: dict[str, Any] = field(default_factory=dict)
    # One line each, printed by `scaffold new-model`: what the package cannot carry over from
    # the config (e.g. dropout it does not apply). What its Megatron YAML cannot express comes
    # from the YAML's own view (scaffolder/views/megatron.py).
    warnings: tuple[str, ...] = ()

    @property
    def uses_gqa(self) -> bool:
        return self.n_kv_heads < self.n_heads

    @property
    def explicit_head_dim(self) -> bool:
        return self.head_dim * self.n_heads != self.dim

    def num_params(self) -> int:
        """Parameter count of the full model (matches transformers' count)."""
        attn = self.dim * self.head_dim * (self.n_heads + 2 * self.n_kv_heads)
        attn += self.n_heads * self.head_dim * self.dim
        if self.attention_bias:
            attn += self.head_dim * (self.n_heads + 2 * self.n_kv_heads) + self.dim
        elif self.features.biases.qkv_only:  # q/k/v biases without an output bias
            attn += self.head_dim * (self.n_heads + 2 * self.n_kv_heads)
        latent = self.features.latent_attention
        if latent is not None:  # multi-head latent attention instead of q/k/v projections
            attn = latent.params(self.dim, self.n_heads)
        qk_norm = self.features.qk_norm
        if qk_norm is not None and qk_norm.kind == "per_head":  # one head_dim weight for q, k
            attn += 2 * self.head_dim
        elif qk_norm is not None:  # over all q heads, all k heads
            attn += (self.n_heads + self.n_kv_heads) * self.head_dim
        if self.features.attention_sinks:  # one per query head
            attn += self.n_heads
        per_layer = attn + 2 * self.dim
        embeddings = self.vocab_size * self.dim * (1 if self.tie_word_embeddings else 2)
        return embeddings + self.n_layers * per_layer + self.mlp_params() + self.dim

    def mlp_params(self, active: bool = False) -> int:
        """Parameters of every layer's MLP: dense MLPs, or router, experts and shared expert.

        ``active``: count only the ``top_k`` experts a token passes through.
        """
        dense = 3 * self.dim * self.ffn_dim
        if self.mlp_bias:
            dense += 2 * self.ffn_dim + self.dim
        moe = self.features.moe
        if moe is None:
            return self.n_layers * dense
        experts = moe.top_k if active else moe.num_experts
        sparse = experts * 3 * self.dim * moe.ffn_dim + moe.num_experts * self.dim
        if moe.router_bias:
            sparse += moe.num_experts
        if moe.expert_biases:  # gate and up biases of ffn_dim, a down bias of dim, per expert
            sparse += experts * (2 * moe.ffn_dim + self.dim)
        if moe.shared_ffn_dim is not None:
            sparse += 3 * self.dim * moe.shared_ffn_dim
            if moe.layout.shared_gate is not None:
                sparse += self.dim
        n_sparse = moe.sparse_layers(self.n_layers)
        return n_sparse * sparse + (self.n_layers - n_sparse) * dense

    def active_params(self) -> int:
        """Parameters one token passes through (a dense model's: all of them)."""
        return self.num_params() - self.mlp_params() + self.mlp_params(active=True)

    @property
    def size_name(self) -> str:
        """Flavor name for the full-size model, e.g. ``"1.1B"`` or ``"135M"``."""
        n = self.num_params()
        if n >= 1e9:
            return f"{n / 1e9:.1f}B".replace(".0B", "B")
        if n >= 1e6:
            return f"{round(n / 1e6)}M"
        return f"{round(n / 1e3)}K"

    def layer_params(self) -> int:
        """Parameters in one transformer block."""
        return (
            self.num_params()
            - self.dim
            - self.vocab_size * self.dim * (1 if self.tie_word_embeddings else 2)
        ) // self.n_layers

    def pipeline_output_weight(self) -> int:
        """How many blocks the output projection weighs when balancing pipeline stages.

        The vocab x hidden matmul costs about ``vocab_size * dim / layer_params`` blocks.
        """
        return max(1, round(self.vocab_size * self.dim / self.layer_params()))

    def debug_dims(self) -> dict[str, Any]:
        """Small dimensions for the ``debugmodel`` flavor that keep every feature of this spec.

        GQA keeps its ratio of query heads to kv heads with two kv heads (so tensor parallel 2
        keeps whole heads), an explicit head_dim stays different from dim / heads, and there are
        enough layers for two pipeline stages of two blocks each.
        """
        dims = {**self.debug_dims_base(), **self.debug_features(), **self.debug_extra}
        if self.features.latent_attention is not None:  # head sizes of their own, no kv heads
            del dims["n_kv_heads"], dims["head_dim"]
        return dims

    def debug_dims_base(self) -> dict[str, Any]:
        """:meth:`debug_dims`' sizes, before the features'."""
        group = self.n_heads // self.n_kv_heads
        n_kv_heads = 2 if group > 1 else 8
        n_heads = n_kv_heads * group
        head_dim = max(16, 256 // n_heads)
        dim = n_heads * head_dim
        if self.explicit_head_dim:
            head_dim += 16
        ffn_dim = max(64, int(round(dim * self.ffn_dim / self.dim / 32)) * 32)
        return {
            "vocab_size": DEBUG_VOCAB_SIZE,
            "dim": dim,
            "n_layers": DEBUG_LAYERS,
            "n_heads": n_heads,
            "n_kv_heads": n_kv_heads,
            "head_dim": head_dim,
            "ffn_dim": ffn_dim,
            "max_seq_len": min(self.max_seq_len, 512),
        }

    def debug_features(self) -> dict[str, Any]:
        """The debug flavor's values of the features: exact comparisons, visible features.

        No attention dropout (training-mode comparisons stay exact); a pad row inside its
        vocabulary; a window shorter than the generated tests' sequences; both kinds of layers
        in its four layers where the full model has both.
        """
        features = self.features
        debug: dict[str, Any] = {}
        if features.attention_dropout:
            debug["attention_dropout"] = 0.0
        padding = features.padding
        if padding is not None and (padding.pad_token_id or 0) >= DEBUG_VOCAB_SIZE:
            debug["pad_token_id"] = 0
        if features.moe is not None:
            debug.update(self.debug_moe())
        if features.latent_attention is not None:
            debug.update(self.debug_latent_attention())
        sliding = features.sliding_window
        if sliding is not None and sliding.active:
            debug["sliding_window"] = min(sliding.window, DEBUG_SLIDING_WINDOW)
            if sliding.layout == "from_max_window_layers":
                first = sliding.max_window_layers
                scaled = min(max(1, round(first * DEBUG_LAYERS / self.n_layers)), DEBUG_LAYERS - 1)
                debug["max_window_layers"] = 0 if first == 0 else scaled
            elif sliding.layout == "sliding_window_pattern":
                debug["sliding_window_pattern"] = min(sliding.pattern, DEBUG_LAYERS)
        return debug

    def debug_moe(self) -> dict[str, Any]:
        """The debug flavor's experts: 8 at most (expert parallel 2 and 4 divide them), half of
        them per token at most, sizes scaled like ``ffn_dim``; dense layers where the full model
        has some."""
        moe = self.features.moe
        dim = self.debug_dims_base()["dim"]

        def scaled(size: int) -> int:
            return max(32, int(round(dim * size / self.dim / 32)) * 32)

        num_experts = min(moe.num_experts, DEBUG_EXPERTS)
        debug: dict[str, Any] = {
            "num_experts": num_experts,
            "top_k": max(1, min(moe.top_k, num_experts // 2)),
            moe.expert_ffn_arg: scaled(moe.ffn_dim),
        }
        if moe.shared_field == "n_shared_experts":  # a multiple of the experts' size
            debug["n_shared_experts"] = moe.shared_ffn_dim // moe.ffn_dim
        elif moe.shared_ffn_dim is not None:
            debug["shared_ffn_dim"] = scaled(moe.shared_ffn_dim)
        routing = moe.group_routing
        if routing is not None and routing.grouped and routing.n_group > 1:
            debug.update(n_group=4, topk_group=2)  # several groups, two of them chosen
        elif routing is not None and routing.grouped:
            debug.update(n_group=1, topk_group=1)
        if moe.first_dense is not None:
            debug["first_k_dense_replace"] = min(moe.first_dense, 1)
        elif moe.has_dense_layers(self.n_layers):
            debug["decoder_sparse_step"] = min(moe.sparse_step, 2)
            only = {
                min(DEBUG_LAYERS - 1, i * DEBUG_LAYERS // self.n_layers)
                for i in moe.mlp_only_layers
            }
            sparse_left = [
                i
                for i in range(DEBUG_LAYERS)
                if i not in only and (i + 1) % debug["decoder_sparse_step"] == 0
            ]
            debug["mlp_only_layers"] = tuple(sorted(only)) if sparse_left else ()
        return debug

    def debug_latent_attention(self) -> dict[str, Any]:
        """The debug flavor's latent attention: small ranks and head parts, all different, the
        query's low-rank path where the full model has one."""
        latent = self.features.latent_attention
        debug: dict[str, Any] = dict(
            kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=24
        )
        if latent.q_lora_rank is not None:
            debug["q_lora_rank"] = 48
        return debug

    def to_context(self) -> dict[str, Any]:
        """The plain dict the templates see as ``cookiecutter.spec``."""
        context = {item.name: getattr(self, item.name) for item in fields(self)}
        context.update(
            uses_gqa=self.uses_gqa,
            explicit_head_dim=self.explicit_head_dim,
            size_name=self.size_name,
            num_params=self.num_params(),
            active_params=self.active_params(),
            debug=self.debug_dims(),
            pipeline_output_weight=self.pipeline_output_weight(),
        )
        return context


def normalize_with_transformers(config: dict[str, Any], model_type: str) -> dict[str, Any]:
    """Resolve defaults, aliases and rope settings exactly as transformers' config class does.

    Old-style ``rope_theta``/``rope_scaling`` and new-style ``rope_parameters`` both come back as
    ``rope_parameters``. Remote code (``auto_map``) is never imported. Results are kept in a
    disk cache keyed by the config and the transformers install (``scaffolder.cache``):
    importing transformers is most of ``new-model``'s time.
    """
    key = cache.normalized_key(config, model_type)
    cached = cache.load_normalized(key)
    if cached is not None:
        return cached
    from huggingface_hub.errors import StrictDataclassError
    from transformers import CONFIG_MAPPING

    config_cls = CONFIG_MAPPING[model_type]
    check_config_class_fields(config, config_cls)
    # A deep copy: some config classes (Phi3Config) fill in their rope_scaling dict in place.
    clean = copy.deepcopy({k: v for k, v in config.items() if k not in ("auto_map", "model_type")})
    tf_logger = logging.getLogger("transformers")
    previous = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            hf_config = config_cls(**clean)
            normalized = hf_config.to_dict()
    except (*TRANSFORMERS_REJECTS, StrictDataclassError) as exc:
        # StrictDataclassError: a field of the wrong type; the message names the field. The
        # others: transformers' own checks, or its code failing on a value of a type it did not
        # expect (check_config_class_fields refuses the known ones first, naming the field).
        reason = _first_line(exc)
        raise ScaffoldError(
            f"config.json rejected by transformers' {config_cls.__name__}: {reason}; "
            "fix config.json"
        ) from None
    finally:
        tf_logger.setLevel(previous)
    normalized["model_type"] = model_type
    cache.store_normalized(key, normalized)
    return normalized


# What transformers' config classes raise for values they cannot use: their own ValueErrors and
# TypeErrors, and errors of their code meeting a value of an unexpected type or size.
TRANSFORMERS_REJECTS = (ValueError, TypeError, LookupError, AttributeError, ArithmeticError)
# Fields every transformers config class reads (PretrainedConfig), checked before it sees them.
_LABEL_FIELDS = ("id2label", "label2id")
MAX_LABELS = 2**16


def check_config_class_fields(config: dict[str, Any], config_cls: type) -> None:
    """Refuse, naming the field, what transformers' ``PretrainedConfig`` cannot take.

    A key naming a method of the config class (``to_dict``) would replace the method; ``dtype``
    and ``torch_dtype`` become a ``torch`` attribute; ``id2label``/``label2id`` are read as
    objects and ``num_labels`` builds that many labels. A nested ``dtype`` must be a name.
    """
    for key in config:
        if callable(inspect.getattr_static(config_cls, key, None)):
            raise ConfigFieldError(
                key,
                f"names a method of transformers' {config_cls.__name__}, not a setting; "
                "remove it from config.json",
            )
    for name in ("dtype", "torch_dtype"):
        if config.get(name) is not None:
            read_choice(config, name, DTYPES)
    for name in _LABEL_FIELDS:
        labels = config.get(name)
        if labels is not None and not isinstance(labels, dict):
            raise ConfigFieldError(name, "must be an object (labels by id) or null")
    if config.get("num_labels") is not None:
        read_int(config, "num_labels", minimum=0, maximum=MAX_LABELS)
    _check_nested_dtypes(config, "")


def _check_nested_dtypes(value: Any, path: str) -> None:
    """transformers turns a nested object's ``dtype`` into a name unless it is a string or int."""
    if isinstance(value, dict):
        for key, item in value.items():
            field_path = f"{path}.{key}" if path else str(key)
            if path and key == "dtype" and not isinstance(item, str | int | dict | None):
                raise ConfigFieldError(field_path, "must be a dtype name such as 'float32'")
            _check_nested_dtypes(item, field_path)
    elif isinstance(value, list):
        for item in value:
            _check_nested_dtypes(item, path)


def _first_line(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
