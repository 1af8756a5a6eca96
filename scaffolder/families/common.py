"""Helpers every family recipe may use: field readers shared by several families, feature
readers (rope, sliding windows, dropout, padding) and parameter counts.

Recipes import from here and from :mod:`scaffolder.spec`, never from one another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scaffolder.config_fields import REQUIRED
from scaffolder.errors import ConfigFieldError
from scaffolder.features import (
    GroupRouting,
    LatentAttention,
    Moe,
    MoeLayout,
    Padding,
    SlidingWindow,
)
from scaffolder.fields import read_bool, read_choice, read_float, read_int, require
from scaffolder.spec import DTYPES, ROPE_TYPES, ArchSpec, RopeSpec

_INT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "max_position_embeddings",
)


def common_fields(
    config: dict[str, Any],
    hf: dict[str, Any],
    rope: RopeSpec | None = None,
    *,
    activation_field: str = "hidden_act",
    activations: tuple[str, ...] = ("silu",),
    norm_eps_field: str = "rms_norm_eps",
) -> dict[str, Any]:
    """The ArchSpec fields every Llama-like family reads the same way.

    ``config`` is the config.json as written, ``hf`` the same after transformers' config class
    (:func:`normalize_with_transformers`). Everything but family, architecture names and biases;
    ``rope`` is the family's own reading of its rope fields (default: :func:`read_rope`).
    ``activation_field`` and ``norm_eps_field`` name the family's fields for ``hidden_act`` (one
    of ``activations``) and ``norm_eps``.
    """
    n_heads = read_int(hf, "num_attention_heads")
    n_kv_heads = read_int(hf, "num_key_value_heads")
    require(
        n_heads % n_kv_heads == 0,
        "num_key_value_heads",
        f"{n_kv_heads} must divide num_attention_heads ({n_heads})",
    )
    dim = read_int(hf, "hidden_size")
    return dict(
        model_type=hf["model_type"],
        vocab_size=read_int(hf, "vocab_size"),
        dim=dim,
        n_layers=read_int(hf, "num_hidden_layers"),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        # Null where the config class derives it (MixtralConfig): hidden_size / heads.
        head_dim=dim // n_heads if hf.get("head_dim") is None else read_int(hf, "head_dim"),
        ffn_dim=read_int(hf, "intermediate_size"),
        max_seq_len=read_int(hf, "max_position_embeddings"),
        norm_eps=read_float(hf, norm_eps_field),
        rope=read_rope(hf) if rope is None else rope,
        tie_word_embeddings=read_bool(hf, "tie_word_embeddings", False),
        hidden_act=read_choice(hf, activation_field, activations),
        initializer_range=read_float(hf, "initializer_range", 0.02),
        torch_dtype=read_dtype(config),
        bos_token_id=optional_token_id(hf, "bos_token_id"),
        eos_token_id=optional_token_id(hf, "eos_token_id"),
    )


def check_raw(
    config: dict[str, Any],
    rope_types: tuple[str, ...] = ROPE_TYPES,
    bool_fields: tuple[str, ...] = ("attention_bias", "mlp_bias", "tie_word_embeddings"),
) -> None:
    """Type and consistency checks on the fields as written, before transformers sees them.

    ``rope_types`` and ``bool_fields`` are what the family's config class knows.
    """
    for name in REQUIRED:
        read_int(config, name)
    for name in _INT_FIELDS:
        if config.get(name) is not None:
            read_int(config, name)
    for name in bool_fields:
        if name in config:
            read_bool(config, name)
    if "rms_norm_eps" in config:
        read_float(config, "rms_norm_eps")
    if "initializer_range" in config:
        read_float(config, "initializer_range")
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    if hidden and heads and config.get("head_dim") is None:
        require(
            hidden % heads == 0,
            "hidden_size",
            f"{hidden} is not divisible by num_attention_heads ({heads}); "
            "set head_dim explicitly or fix the sizes",
        )
    kv_heads = config.get("num_key_value_heads")
    if heads and kv_heads:
        require(
            heads % kv_heads == 0,
            "num_key_value_heads",
            f"{kv_heads} must divide num_attention_heads ({heads})",
        )
    check_raw_rope_type(config, rope_types)


def check_raw_rope_type(config: dict[str, Any], rope_types: tuple[str, ...]) -> None:
    """``rope_scaling`` / ``rope_parameters`` as written: an object (or null) of a known type."""
    for name in ("rope_scaling", "rope_parameters"):
        block = config.get(name)
        if block is None:
            continue
        require(isinstance(block, dict), name, "must be an object or null")
        key = "rope_type" if "rope_type" in block else "type"
        rope_type = block.get(key, "default")
        require(
            rope_type in rope_types,
            f"{name}.{key}",
            f"unsupported rope type {rope_type!r}; supported: {', '.join(rope_types)}",
        )
        if rope_type == "yarn":  # before transformers, which would divide by zero on some
            read_yarn(block, 10000.0, block.get("original_max_position_embeddings") or 1)


def read_rope(hf: dict[str, Any], rope_types: tuple[str, ...] = ROPE_TYPES) -> RopeSpec:
    """The RoPE of transformers' ``rope_parameters``, one of ``rope_types`` (of ROPE_TYPES)."""
    params = hf.get("rope_parameters") or {}
    rope_type = params.get("rope_type", "default")
    require(
        rope_type in rope_types,
        "rope_parameters.rope_type",
        f"unsupported rope type {rope_type!r}; supported: {', '.join(rope_types)}",
    )
    theta = read_float(params, "rope_theta", 10000.0)
    if rope_type == "default":
        return RopeSpec(type="default", theta=theta)
    if rope_type == "yarn":
        return read_yarn(params, theta, read_int(hf, "max_position_embeddings"))
    factor = read_float(params, "factor")
    if rope_type in ("linear", "dynamic"):
        require(factor >= 1.0, "rope_scaling.factor", f"must be >= 1.0, got {factor}")
        return RopeSpec(type=rope_type, theta=theta, factor=factor)
    low = read_float(params, "low_freq_factor")
    high = read_float(params, "high_freq_factor")
    require(
        high > low,
        "rope_scaling.high_freq_factor",
        f"must be greater than low_freq_factor ({low}), got {high}",
    )
    return RopeSpec(
        type="llama3",
        theta=theta,
        factor=factor,
        low_freq_factor=low,
        high_freq_factor=high,
        original_max_position_embeddings=read_int(params, "original_max_position_embeddings"),
    )


# YaRN's ramp bounds where the config leaves them out (or null or 0), as transformers reads them.
YARN_BETA_FAST = 32.0
YARN_BETA_SLOW = 1.0


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's attention scale for a context ``factor`` times longer (transformers' get_mscale)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def read_yarn(params: dict[str, Any], theta: float, max_seq_len: int) -> RopeSpec:
    """YaRN (rope_type "yarn") as transformers' ``_compute_yarn_parameters`` reads it.

    ``factor`` and ``original_max_position_embeddings`` (default: max_position_embeddings);
    ``beta_fast``/``beta_slow`` (null or 0: 32 and 1); ``attention_factor``, else inferred from
    factor, ``mscale`` and ``mscale_all_dim``; ``truncate`` (default true).
    """

    def number(key: str, default: Any = None, positive: bool = True) -> float | None:
        value = params.get(key, default)
        if value is None:
            return None
        return read_float({f"rope_scaling.{key}": value}, f"rope_scaling.{key}", positive=positive)

    require(theta > 1.0, "rope_theta", f"must be greater than 1 for YaRN, got {theta}")
    factor = number("factor", positive=False)
    require(factor is not None, "rope_scaling.factor", "is missing; YaRN needs it (e.g. 4.0)")
    require(factor >= 1.0, "rope_scaling.factor", f"must be >= 1.0, got {factor}")
    original = read_int(
        {
            "rope_scaling.original_max_position_embeddings": params.get(
                "original_max_position_embeddings", max_seq_len
            )
        },
        "rope_scaling.original_max_position_embeddings",
    )
    beta_fast = number("beta_fast", positive=False) or YARN_BETA_FAST
    beta_slow = number("beta_slow", positive=False) or YARN_BETA_SLOW
    require(beta_slow > 0, "rope_scaling.beta_slow", f"must be positive, got {beta_slow}")
    require(
        beta_fast > beta_slow,
        "rope_scaling.beta_fast",
        f"must be greater than beta_slow ({beta_slow}), got {beta_fast}",
    )
    mscale = number("mscale", positive=False)
    mscale_all_dim = number("mscale_all_dim", positive=False)
    for key, value in (("mscale", mscale), ("mscale_all_dim", mscale_all_dim)):
        require(value is None or value >= 0, f"rope_scaling.{key}", f"must be >= 0, got {value}")
    attention_factor = number("attention_factor")
    inferred = attention_factor is None
    if inferred:
        if mscale and mscale_all_dim:
            attention_factor = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = yarn_mscale(factor)
    truncate = read_bool(
        {"rope_scaling.truncate": params.get("truncate", True)}, "rope_scaling.truncate"
    )
    return RopeSpec(
        type="yarn",
        theta=theta,
        factor=factor,
        original_max_position_embeddings=original,
        beta_fast=beta_fast,
        beta_slow=beta_slow,
        mscale=mscale,
        mscale_all_dim=mscale_all_dim,
        attention_factor=attention_factor,
        attention_factor_inferred=inferred,
        truncate=truncate,
    )


def read_attention_dropout(hf: dict[str, Any]) -> float | None:
    """``attention_dropout``, when the config trains with it: transformers drops attention
    probabilities in training mode (the packages do the same; evaluation never drops)."""
    return read_dropout(hf, ("attention_dropout",)).get("attention_dropout")


def read_dropout(hf: dict[str, Any], names: tuple[str, ...]) -> dict[str, float]:
    """The config's non-zero dropout probabilities (each in [0, 1)), by field name."""
    dropout = {}
    for name in names:
        p = read_float(hf, name, 0.0, positive=False)
        require(0.0 <= p < 1.0, name, f"must be in [0, 1), got {p}")
        if p:
            dropout[name] = p
    return dropout


def read_padding(hf: dict[str, Any]) -> Padding | None:
    """``pad_token_id`` as the embedding's ``padding_idx``, as transformers builds the embedding.

    That row gets no gradient (and starts at zero).
    """
    if hf.get("pad_token_id") is None:
        return None
    pad = read_int(hf, "pad_token_id", minimum=0)
    vocab_size = read_int(hf, "vocab_size")
    require(pad < vocab_size, "pad_token_id", f"{pad} is not below vocab_size ({vocab_size})")
    return Padding(pad_token_id=pad)


def read_dtype(config: dict[str, Any]) -> str:
    value = config.get("torch_dtype", config.get("dtype")) or "float32"
    field = "torch_dtype" if "torch_dtype" in config else "dtype"
    return read_choice({field: value}, field, DTYPES)


def optional_token_id(hf: dict[str, Any], field: str) -> int | None:
    value = hf.get(field)
    if value is None or isinstance(value, list):
        return None
    return read_int(hf, field, minimum=0)


def read_sliding_window(config: dict[str, Any]) -> int | None:
    """``sliding_window``: a positive number of tokens, or None (null) for full attention."""
    if config.get("sliding_window") is None:
        return None
    return read_int(config, "sliding_window")


def every_layer_sliding_window(hf: dict[str, Any]) -> SlidingWindow:
    """``sliding_window`` on every layer (null: full attention)."""
    return SlidingWindow(window=read_sliding_window(hf), layout="all")


LAYER_TYPES = ("full_attention", "sliding_attention")


def check_raw_max_window_layers(config: dict[str, Any]) -> None:
    """Types of the sliding-window fields as written, before transformers reads them."""
    if "use_sliding_window" in config:
        read_bool(config, "use_sliding_window")
    read_sliding_window(config)
    if "max_window_layers" in config:
        read_int(config, "max_window_layers", minimum=0)
    layer_types = config.get("layer_types")
    if layer_types is not None:
        require(
            isinstance(layer_types, list) and all(t in LAYER_TYPES for t in layer_types),
            "layer_types",
            f"must be a list of {' / '.join(LAYER_TYPES)}",
        )


def max_window_layers_sliding_window(hf: dict[str, Any]) -> SlidingWindow:
    """Sliding windows on the layers from ``max_window_layers`` up, as transformers resolved them.

    transformers sets ``sliding_window`` to None unless ``use_sliding_window``, and derives
    ``layer_types`` from ``max_window_layers`` unless config.json lists them.
    """
    n_layers = read_int(hf, "num_hidden_layers")
    layer_types = list(hf.get("layer_types") or [])
    require(
        len(layer_types) == n_layers,
        "layer_types",
        f"lists {len(layer_types)} layers, num_hidden_layers is {n_layers}",
    )
    first_sliding = (
        layer_types.index("sliding_attention") if "sliding_attention" in layer_types else n_layers
    )
    n_sliding = n_layers - first_sliding
    expected = ["full_attention"] * first_sliding + ["sliding_attention"] * n_sliding
    require(
        layer_types == expected,
        "layer_types",
        "must list full_attention layers first and sliding_attention layers after them "
        "(the pattern max_window_layers describes); other patterns are not supported",
    )
    layout = dict(layout="from_max_window_layers")
    if first_sliding == n_layers:
        return SlidingWindow(window=None, **layout)
    window = read_sliding_window(hf)
    require(
        window is not None,
        "layer_types",
        "lists sliding_attention layers but there is no window "
        "(use_sliding_window false or sliding_window null)",
    )
    return SlidingWindow(window=window, max_window_layers=first_sliding, **layout)


def sandwich_block_counts(fields: dict[str, Any], qk_norm: bool = False) -> dict[str, int]:
    """CountedSpec's counts: Gemma's block with four norms (and per-head q/k norms)."""
    dim, head_dim = fields["dim"], fields["head_dim"]
    block = attention_params(
        dim,
        fields["n_heads"],
        fields["n_kv_heads"],
        head_dim,
        qkv_bias=fields["attention_bias"],
        out_bias=fields["attention_bias"],
    )
    block += mlp_params(dim, fields["ffn_dim"], gated=True, bias=False) + 4 * dim
    if qk_norm:
        block += 2 * head_dim
    embeddings = fields["vocab_size"] * dim * (1 if fields["tie_word_embeddings"] else 2)
    return {"block_params": block, "other_params": embeddings + dim}


def optional_positive(hf: dict[str, Any], field: str) -> float | None:
    """A positive number, or None where config.json sets the field to null."""
    return None if hf.get(field) is None else read_float(hf, field)


def pattern_sliding_window(hf: dict[str, Any]) -> SlidingWindow:
    """``sliding_window`` and the period N of ``layer_types`` (every Nth layer attends fully).

    transformers builds layer_types from a fixed rule when config.json has none; an explicit
    list must follow such a period, the only layouts the generated ModelArgs can describe at
    every size.
    """
    window = read_sliding_window(hf)
    require(
        window is not None,
        "sliding_window",
        "is null; the sliding_attention layers need a window (tokens)",
    )
    layer_types = hf.get("layer_types")
    n_layers = read_int(hf, "num_hidden_layers")
    if not isinstance(layer_types, list) or len(layer_types) != n_layers:
        raise ConfigFieldError("layer_types", f"must list one type per layer ({n_layers} layers)")
    unknown = sorted(set(layer_types) - {"sliding_attention", "full_attention"})
    require(
        not unknown,
        "layer_types",
        f"unsupported layer types {unknown}; supported: sliding_attention, full_attention",
    )
    require(
        "full_attention" in layer_types,
        "layer_types",
        "has no full_attention layer; this package needs every Nth layer to attend fully",
    )
    pattern = layer_types.index("full_attention") + 1
    require(
        pattern > 1,
        "layer_types",
        "has no sliding_attention layer before the first full_attention one; this package "
        "needs the sliding layers of the every-Nth-layer-full layout",
    )
    expected = [
        "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n_layers)
    ]
    require(
        layer_types == expected,
        "layer_types",
        f"is not every {pattern}th layer full attention and the others sliding; "
        "this package cannot express that layout",
    )
    return SlidingWindow(window=window, layout="sliding_window_pattern", pattern=pattern)


def check_rotary_dim(partial: float, head_dim: int, field: str = "partial_rotary_factor") -> int:
    """The channels ``partial_rotary_factor`` (``field``) leaves RoPE: a positive even number."""
    require(partial <= 1.0, field, f"must be in (0, 1], got {partial}")
    rotary_dim = int(head_dim * partial)
    require(
        rotary_dim >= 2 and rotary_dim % 2 == 0,
        field,
        f"{partial} leaves {rotary_dim} of head_dim {head_dim} channels to rotate; "
        "RoPE needs a positive even number",
    )
    return rotary_dim


# The GELUs the non-gated MLP part computes exactly as transformers' ACT2FN does.
GELU_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu", "gelu_new", "gelu_fast")


def layernorm_block_counts(fields: dict[str, Any]) -> dict[str, int]:
    """CountedSpec's counts for pre-norm LayerNorm blocks with a plain MLP."""
    dim = fields["dim"]
    block = attention_params(
        dim,
        fields["n_heads"],
        fields["n_kv_heads"],
        fields["head_dim"],
        qkv_bias=fields["attention_bias"],
        out_bias=fields["attention_bias"],
    )
    block += mlp_params(dim, fields["ffn_dim"], gated=False, bias=fields["mlp_bias"])
    block += 2 * 2 * dim  # two LayerNorms, weight and bias
    embeddings = fields["vocab_size"] * dim * (1 if fields["tie_word_embeddings"] else 2)
    return {"block_params": block, "other_params": embeddings + 2 * dim}


def dropout_warnings(dropout: tuple[tuple[str, float], ...]) -> tuple[str, ...]:
    """A warning naming the config's non-zero dropouts: the generated model trains without any."""
    if not dropout:
        return ()
    named = ", ".join(f"{name} {p}" for name, p in dropout)
    return (
        f"dropout is not applied ({named}): the model and its Megatron YAML train without "
        "dropout, as transformers' eval mode runs",
    )


@dataclass(frozen=True)
class CountedSpec(ArchSpec):
    """An ArchSpec whose recipe states the parameter counts."""

    block_params: int = 0  # one transformer block
    other_params: int = 0  # embeddings (and positions), final norm, untied output projection

    def num_params(self) -> int:
        """Parameter count of the full model (matches transformers' count)."""
        return self.n_layers * self.block_params + self.other_params

    def layer_params(self) -> int:
        """Parameters in one transformer block."""
        return self.block_params


def attention_params(
    dim: int, n_heads: int, n_kv_heads: int, head_dim: int, *, qkv_bias: bool, out_bias: bool
) -> int:
    """q, k, v and output projections."""
    qkv = dim * head_dim * (n_heads + 2 * n_kv_heads)
    out = n_heads * head_dim * dim
    if qkv_bias:
        qkv += head_dim * (n_heads + 2 * n_kv_heads)
    if out_bias:
        out += dim
    return qkv + out


def mlp_params(dim: int, ffn_dim: int, *, gated: bool, bias: bool) -> int:
    """Gated (gate, up, down) or plain (up, down) MLP."""
    params = (3 if gated else 2) * dim * ffn_dim
    if bias:
        params += (2 if gated else 1) * ffn_dim + dim
    return params


def read_moe(
    config: dict[str, Any],
    hf: dict[str, Any],
    *,
    experts_field: str,
    ffn_field: str,
    routing: str = "softmax_topk",
    renormalize_field: str | None = None,
    shared: bool = False,
    layered: bool = False,
    layout: MoeLayout | None = None,
) -> Moe:
    """The mixture of experts of a config: ``experts_field`` experts of ``ffn_field`` hidden
    units, ``num_experts_per_tok`` of them per token.

    ``renormalize_field``: the config's switch for renormalizing the top-k probabilities (None:
    the family always renormalizes). ``shared``: a shared expert of
    ``shared_expert_intermediate_size``. ``layered``: ``decoder_sparse_step`` and
    ``mlp_only_layers`` choose the sparse layers. Types are checked on ``config`` as written;
    values come from ``hf`` (transformers' reading, whose field names may differ).
    """
    n_layers = read_int(config, "num_hidden_layers")

    def value(field: str, *aliases: str) -> Any:
        for name in (field, *aliases):
            if name in config:
                return config[name]
        for name in (field, *aliases):
            if name in hf:
                return hf[name]
        return None

    num_experts = read_int(
        {experts_field: value(experts_field, "num_experts", "num_local_experts")},
        experts_field,
        minimum=0,
    )
    require(
        num_experts >= 1,
        experts_field,
        "is 0: a mixture of experts needs at least one expert (a dense model is another family)",
    )
    top_k = read_int({"num_experts_per_tok": value("num_experts_per_tok")}, "num_experts_per_tok")
    require(
        top_k <= num_experts,
        "num_experts_per_tok",
        f"{top_k} is more than the {num_experts} experts ({experts_field})",
    )
    ffn_dim = read_int({ffn_field: value(ffn_field)}, ffn_field)
    coef = read_float(
        {"router_aux_loss_coef": value("router_aux_loss_coef")},
        "router_aux_loss_coef",
        positive=False,
    )
    require(coef >= 0, "router_aux_loss_coef", f"must be >= 0, got {coef}")
    renormalize = True
    if renormalize_field is not None:
        renormalize = read_bool({renormalize_field: value(renormalize_field)}, renormalize_field)
    shared_ffn_dim = None
    if shared:
        shared_ffn_dim = read_int(
            {"shared_expert_intermediate_size": value("shared_expert_intermediate_size")},
            "shared_expert_intermediate_size",
        )
    sparse_step, mlp_only = None, ()
    if layered:
        sparse_step = read_int(
            {"decoder_sparse_step": value("decoder_sparse_step")}, "decoder_sparse_step"
        )
        only = value("mlp_only_layers") or []
        require(
            isinstance(only, list)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in only),
            "mlp_only_layers",
            "must be a list of layer numbers",
        )
        require(
            all(0 <= i < n_layers for i in only),
            "mlp_only_layers",
            f"lists layers outside 0..{n_layers - 1} (num_hidden_layers {n_layers})",
        )
        mlp_only = tuple(sorted(set(only)))
    moe = Moe(
        num_experts=num_experts,
        top_k=top_k,
        ffn_dim=ffn_dim,
        aux_loss_coef=coef,
        routing=routing,
        renormalize=renormalize,
        shared_ffn_dim=shared_ffn_dim,
        sparse_step=sparse_step,
        mlp_only_layers=mlp_only,
        experts_field=experts_field,
        ffn_field=ffn_field,
        renormalize_field=renormalize_field,
        layout=layout or MoeLayout(),
    )
    require(
        moe.sparse_layers(n_layers) > 0,
        "mlp_only_layers" if mlp_only else "decoder_sparse_step",
        "leaves no layer with experts; this is a dense model",
    )
    return moe


# ---------------------------------------------------------------- DeepSeek (V2, V3)


def read_latent_attention(hf: dict[str, Any], *, interleaved: bool) -> LatentAttention:
    """Multi-head latent attention's sizes (q_lora_rank null: one q_proj, no low-rank path).

    num_key_value_heads must equal num_attention_heads (or be null): every head expands its own
    keys and values from the latent, and transformers repeats key heads by their ratio.
    """
    heads = read_int(hf, "num_attention_heads")
    require(
        hf.get("num_key_value_heads") in (None, heads),
        "num_key_value_heads",
        f"must equal num_attention_heads ({heads}) for multi-head latent attention",
    )
    require(
        not hf.get("attention_bias", False),
        "attention_bias",
        "true is not supported (no published DeepSeek model has attention biases); set it to false",
    )
    q_lora = hf.get("q_lora_rank")
    rope_dim = read_int(hf, "qk_rope_head_dim")
    require(
        rope_dim % 2 == 0, "qk_rope_head_dim", f"must be even (RoPE turns pairs), got {rope_dim}"
    )
    return LatentAttention(
        q_lora_rank=None if q_lora is None else read_int(hf, "q_lora_rank"),
        kv_lora_rank=read_int(hf, "kv_lora_rank"),
        qk_nope_head_dim=read_int(hf, "qk_nope_head_dim"),
        qk_rope_head_dim=rope_dim,
        v_head_dim=read_int(hf, "v_head_dim"),
        interleaved=interleaved,
    )


def read_group_moe(
    config: dict[str, Any], hf: dict[str, Any], routing: GroupRouting, *, renormalize: bool
) -> Moe:
    """DeepSeek's mixture: n_routed_experts experts of moe_intermediate_size, num_experts_per_tok
    of them per token chosen by ``routing``, n_shared_experts shared experts (one SwiGLU MLP of
    n_shared_experts * moe_intermediate_size, no gate), dense MLPs in the first
    first_k_dense_replace layers. DeepSeek's configs have no router_aux_loss_coef."""
    n_layers = read_int(config, "num_hidden_layers")
    num_experts = read_int(hf, "n_routed_experts", minimum=0)
    require(num_experts >= 1, "n_routed_experts", "is 0: a mixture of experts needs experts")
    top_k = read_int(hf, "num_experts_per_tok")
    require(
        top_k <= num_experts,
        "num_experts_per_tok",
        f"{top_k} is more than the {num_experts} experts (n_routed_experts)",
    )
    routing_checks = routing.grouped  # greedy routing ignores n_group and topk_group
    require(
        not routing_checks or num_experts % routing.n_group == 0,
        "n_group",
        f"{routing.n_group} must divide n_routed_experts ({num_experts})",
    )
    require(
        not routing_checks or routing.topk_group <= routing.n_group,
        "topk_group",
        f"{routing.topk_group} is more than n_group ({routing.n_group})",
    )
    per_group = num_experts // routing.n_group if routing_checks else num_experts
    require(
        not routing_checks or top_k <= routing.topk_group * per_group,
        "num_experts_per_tok",
        f"{top_k} is more than the {routing.topk_group * per_group} experts of topk_group groups",
    )
    if routing.top2:
        require(
            per_group >= 2, "n_group", "leaves fewer than 2 experts a group (scores sum the best 2)"
        )
    shared = read_int(hf, "n_shared_experts", minimum=0)
    require(shared >= 1, "n_shared_experts", "0 is not supported (every DeepSeek model has one)")
    ffn_dim = read_int(hf, "moe_intermediate_size")
    first = read_int(hf, "first_k_dense_replace", minimum=0)
    require(
        first < n_layers,
        "first_k_dense_replace",
        f"leaves no layer with experts ({n_layers} layers)",
    )
    return Moe(
        num_experts=num_experts,
        top_k=top_k,
        ffn_dim=ffn_dim,
        aux_loss_coef=0.0,
        renormalize=renormalize,
        shared_ffn_dim=shared * ffn_dim,
        experts_field="n_routed_experts",
        ffn_field="moe_intermediate_size",
        renormalize_field="norm_topk_prob",
        layout=MoeLayout(shared_expert="shared_experts", shared_gate=None),
        first_dense=first,
        group_routing=routing,
        shared_field="n_shared_experts",
        balancing="expert_bias" if routing.bias_name else "none",
    )
