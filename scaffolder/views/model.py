"""The model area: what ``model/model.py`` and its parts (``parts/model/``) print.

Everything a part would otherwise branch on is decided here from the spec's typed features: the
docstrings (sentences, wrapped by the ``prose`` filter), which parts make up the file and
which part writes each piece of code only some models have, and the keyword arguments of
``scaled_dot_product_attention``. The code itself is in the parts: a view names the part
(``parts/model/<name>.py.j2``) and the template includes it. Parts that write lines inside a
function body are at that body's indentation and end without a newline, so that an include
stands in for its lines. The module docstring's overview is in :mod:`scaffolder.views.overview`.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaffolder.errors import ScaffoldError
from scaffolder.features import Features
from scaffolder.spec import ArchSpec
from scaffolder.views.overview import kv_heads, overview, qk_norm_sentence, scale_sentence

NORM_CLASSES = {"rmsnorm": "nn.RMSNorm", "rmsnorm_1p": "RMSNorm", "layernorm": "nn.LayerNorm"}
NORM_NAMES = {"rmsnorm": "RMSNorm", "rmsnorm_1p": "RMSNorm", "layernorm": "LayerNorm"}
# The MLP's activation of ``self.w1(x)``, by hidden_act; gelu_new and gelu_fast are written out
# as transformers computes them (parts/model/activation_<name>.py.j2).
ACTIVATIONS = {
    "silu": "F.silu(self.w1(x))",
    "gelu": "F.gelu(self.w1(x))",
    "gelu_pytorch_tanh": 'F.gelu(self.w1(x), approximate="tanh")',
    "gelu_new": "gelu_new(self.w1(x))",
    "gelu_fast": "gelu_fast(self.w1(x))",
}
WRITTEN_OUT_GELUS = ("gelu_new", "gelu_fast")


def keep(*pairs: tuple[object, str]) -> tuple[str, ...]:
    """The names (of parts, of keyword arguments) whose condition holds, in order."""
    return tuple(name for condition, name in pairs if condition)


def doc(summary: str, *details: str | None) -> str:
    """Docstring text for the ``prose`` filter: the summary, then a paragraph of the details that
    are not None, one sentence a line."""
    body = "\n".join(line for line in details if line)
    return f"{summary}\n\n{body}" if body else summary


def _choose(what: str, value: str, choices: dict[str, str]) -> str:
    if value not in choices:
        raise ScaffoldError(f"model.py has no {what} {value!r}; known: {', '.join(choices)}")
    return choices[value]


@dataclass(frozen=True)
class _Facts:
    """The spec's switches as the model parts ask about them."""

    rotary: bool
    longrope: bool
    dynamic: bool  # dynamic NTK rope: frequencies recomputed past max_position_embeddings
    sliding: bool  # some layer slides
    per_layer: bool  # some layers slide, the others attend fully
    pattern: bool  # ... every sliding_window_pattern-th layer attending fully
    per_head_norm: bool  # q/k RMSNorm over each head
    projection_norm: bool  # q/k RMSNorm over the whole projection
    explicit: bool  # scores soft-capped, so computed without scaled_dot_product_attention
    scaled: bool  # a scale other than head_dim ** -0.5 (self.scale)
    multipliers: bool
    dropout: bool
    sinks: bool = False  # a learned sink logit per head: scores computed explicitly too


def _facts(spec: ArchSpec) -> _Facts:
    f = spec.features
    sliding = f.sliding_window is not None and f.sliding_window.active
    per_layer = sliding and f.sliding_window.per_layer
    qk_norm = f.qk_norm.kind if f.qk_norm is not None else None
    return _Facts(
        rotary=spec.rope is not None,
        longrope=spec.rope is not None and spec.rope.type == "longrope",
        dynamic=spec.rope is not None and spec.rope.type == "dynamic",
        sliding=sliding,
        per_layer=per_layer,
        pattern=per_layer and f.sliding_window.layout == "sliding_window_pattern",
        per_head_norm=qk_norm == "per_head",
        projection_norm=qk_norm == "projection",
        explicit=f.softcap is not None and f.softcap.attention is not None,
        scaled=f.query_pre_attn_scalar is not None or f.multipliers is not None,
        multipliers=f.multipliers is not None,
        dropout=bool(f.attention_dropout),
        sinks=f.attention_sinks,
    )


# ---------------------------------------------------------------- attention


@dataclass(frozen=True)
class AttentionView:
    """``Attention``: parts/model/attention.py.j2 (torch's fused attention), or
    attention_softcap.py.j2 where soft-capped scores are computed explicitly. The tuples name the
    parts that write the code only some models have, in file order."""

    doc: str
    init_params: str
    window: tuple[str, ...]  # __init__: the sliding window, before head_dim
    attributes: tuple[str, ...]  # __init__: after head_dim, before the projections
    qkv_bias: bool
    o_bias: bool
    qk_norms: tuple[str, ...]  # __init__, after the projections
    init_weights: tuple[str, ...]  # after the projections' weights: their biases, the q/k norms
    q: str  # the query projection, before its split into heads
    k: str
    positions: tuple[str, ...]  # forward: per-head q/k norms, then the rotation
    repeat_kv: tuple[str, ...]  # explicit scores: key/value heads repeated for their queries
    mask: tuple[str, ...]  # fused attention: the sliding-window mask
    sdpa_kwargs: tuple[str, ...]
    dropout: bool = False  # explicit scores: attention probabilities dropped in training


def attention_view(spec: ArchSpec) -> AttentionView:
    f, x = spec.features, _facts(spec)
    gqa_repeat = (x.explicit or x.sinks) and spec.uses_gqa
    qkv_only = f.biases.qkv_only and not spec.attention_bias
    return AttentionView(
        doc=_attention_doc(spec, x),
        init_params="model_args: ModelArgs, sliding: bool"
        if x.per_layer
        else "model_args: ModelArgs",
        window=keep(
            (x.per_layer, "window_attribute_per_layer"),
            (x.sliding and not x.per_layer, "window_attribute"),
        ),
        attributes=keep(
            (x.longrope, "longrope_attribute"),
            (x.dynamic, "rope_dynamic_attribute"),
            (gqa_repeat, "repeat_kv_attribute"),
            (f.query_pre_attn_scalar is not None, "scale_query_pre_attn_scalar"),
            (x.scaled and f.query_pre_attn_scalar is None, "scale_attention_multiplier"),
            (x.explicit, "softcap_attribute"),
            (x.dropout, "dropout_attribute"),
            (x.sinks, "sinks_attribute"),
        ),
        qkv_bias=spec.attention_bias or f.biases.qkv_only,
        o_bias=spec.attention_bias,
        qk_norms=keep(
            (x.per_head_norm, "qk_norm_per_head"), (x.projection_norm, "qk_norm_projection")
        ),
        init_weights=keep(
            (spec.attention_bias, "init_zero_bias"),
            (qkv_only, "init_zero_qkv_bias"),
            (f.qk_norm, "init_qk_norm"),
            (x.sinks, "init_sinks"),
        ),
        q="self.q_norm(self.wq(x))" if x.projection_norm else "self.wq(x)",
        k="self.k_norm(self.wk(x))" if x.projection_norm else "self.wk(x)",
        positions=keep(
            (x.per_head_norm, "qk_norm_per_head_apply"),
            (x.longrope, "longrope_rows"),
            (x.dynamic, "rope_dynamic_rows"),
            (x.rotary, "rope_apply"),
        ),
        repeat_kv=keep((gqa_repeat, "repeat_kv")),
        mask=keep(
            (x.per_layer, "window_mask_per_layer"),
            (x.sliding and not x.per_layer, "window_mask"),
        ),
        sdpa_kwargs=keep(
            (x.per_layer, "attn_mask=mask, is_causal=mask is None"),
            (x.sliding and not x.per_layer, "attn_mask=mask"),
            (not x.sliding, "is_causal=True"),
            (x.scaled or f.latent_attention is not None, "scale=self.scale"),
            (not x.scaled and not f.scale_attn_weights, "scale=1.0"),
            (x.dropout, "dropout_p=self.dropout if self.training else 0.0"),
            (spec.uses_gqa, "enable_gqa=True"),
        ),
        dropout=x.dropout and x.sinks,
    )


def _attention_doc(spec: ArchSpec, x: _Facts) -> str:
    f = spec.features
    if f.latent_attention is not None:
        return _latent_doc(spec)
    positions = "rotary positions" if x.rotary else "learned position embeddings"
    if x.explicit:
        summary = f"Causal self-attention with soft-capped scores and {positions}."
    elif x.sinks:
        summary = f"Causal self-attention with attention sinks and {positions}."
    elif spec.uses_gqa:
        summary = f"Causal self-attention with grouped-query attention and {positions}."
    else:
        summary = f"Causal multi-head self-attention with {positions}."
    heads = (
        f"{spec.n_heads} query heads (num_attention_heads) share {kv_heads(spec)} "
        "(num_key_value_heads)"
        + (
            "."
            if x.explicit or x.sinks
            else "; scaled_dot_product_attention broadcasts the key/value heads itself."
        )
    )
    return doc(
        summary,
        heads if spec.uses_gqa else None,
        "q_proj, k_proj and v_proj have biases, o_proj has none."
        if f.biases.qkv_only and not spec.attention_bias
        else None,
        _sliding_sentence(f),
        qk_norm_sentence(f),
        scale_sentence(f),
        "Scores are squashed into (-cap, cap) as ``cap * tanh(scores / cap)`` "
        "(attn_logit_softcapping) before the mask and the float32 softmax; "
        "scaled_dot_product_attention has no such step, so they are computed explicitly."
        if x.explicit
        else None,
        "Each head has a learned sink logit (``sinks``) joined to its softmax: it takes a share "
        "of the probability and adds no value. scaled_dot_product_attention cannot take it, so "
        "scores are computed explicitly: the matmul, the mask, a float32 softmax over the scores "
        "and the sink's column, then that column dropped (memory grows with seqlen squared; "
        "flash kernels with sink support are the efficient path on GPUs)."
        if x.sinks
        else None,
        "In training, attention probabilities are dropped with probability ``attention_dropout``."
        if x.dropout
        else None,
    )


def _sliding_sentence(f: Features) -> str | None:
    sliding = f.sliding_window
    if sliding is None or not sliding.active:
        return None
    return {
        "all": "Every layer attends through a sliding window of ``sliding_window`` tokens.",
        "from_max_window_layers": "Layers ``max_window_layers`` and up attend through a sliding "
        "window of ``sliding_window`` tokens; the layers below attend to the whole causal prefix.",
        "sliding_window_pattern": "Sliding layers (``sliding``) attend through a window of "
        "``sliding_window`` tokens; every sliding_window_pattern-th layer attends to the whole "
        "prefix.",
    }[sliding.layout]


# ---------------------------------------------------------------- MLP, block


@dataclass(frozen=True)
class FeedForwardView:
    """``FeedForward``: parts/model/feed_forward_swiglu.py.j2 or feed_forward_gelu.py.j2."""

    doc: str
    hidden: str  # what w2 projects back
    init_weights: tuple[str, ...]  # after the weights: the biases


def feed_forward_view(spec: ArchSpec) -> FeedForwardView:
    act = _choose("activation", spec.hidden_act, ACTIVATIONS)
    gated = spec.features.gated_mlp
    field = spec.features.names.activation
    gelu = {
        "silu": None,
        "gelu": f"The GELU is the exact one, with erf ({field} gelu).",
        "gelu_pytorch_tanh": "The GELU is the tanh approximation "
        f"({field} gelu_pytorch_tanh), as torch computes it.",
    }.get(
        spec.hidden_act,
        f"The GELU is the tanh approximation ({field} {spec.hidden_act}), in transformers' "
        "operation order: torch's fused tanh GELU rounds differently.",
    )
    if gated:
        glu, fn = ("SwiGLU", "silu") if spec.hidden_act == "silu" else ("GeGLU", "gelu")
        names = spec.features.mlp_names
        summary = f"{glu} MLP: ``w2({fn}(w1(x)) * w3(x))`` ({names} in transformers)."
    else:
        names = spec.features.mlp_names
        summary = f"MLP ``w2(gelu(w1(x)))``, no gate ({names} in transformers)."
    return FeedForwardView(
        doc=doc(summary, gelu),
        hidden=f"{act} * self.w3(x)" if gated else act,
        init_weights=keep((spec.mlp_bias, "init_zero_bias")),
    )


@dataclass(frozen=True)
class BlockView:
    """``TransformerBlock``: parts/model/block_*.py.j2."""

    doc: str  # block_pre_norm's (the other blocks' docstrings are fixed)
    init_params: str
    new: str  # how Transformer builds the block of ``layer_id``
    attention: str  # how the block builds its Attention
    attributes: tuple[str, ...]  # parts
    residual_scale: str  # after each sublayer's output
    # block_pre_norm: the MLP (dense, experts, or either by layer): __init__'s lines, then
    # init_weights', forward's before its return, and what forward calls on the normed h.
    mlp_init: tuple[str, ...] = (
        "self.feed_forward = FeedForward(model_args.dim, model_args.ffn_dim)",
    )
    mlp_init_weights: tuple[str, ...] = ("self.feed_forward.init_weights(init_std)",)
    mlp_setup: tuple[str, ...] = ()
    mlp: str = "self.feed_forward"


def _mlp_lines(spec: ArchSpec) -> dict[str, object]:
    """BlockView's MLP fields: experts in every layer, or experts or a dense MLP by layer."""
    moe = spec.features.moe
    if moe is None:
        return {}
    if spec.parts["block"] != "block_pre_norm":
        raise ScaffoldError("mixture-of-experts layers need the pre-norm block (block_pre_norm)")
    if not moe.has_dense_layers(spec.n_layers):
        return dict(
            mlp_init=("self.moe = MoE(model_args)",),
            mlp_init_weights=("self.moe.init_weights(init_std)",),
            mlp="self.moe",
        )
    return dict(
        mlp_init=(
            "# first_k_dense_replace: experts here, or a dense MLP."
            if moe.first_dense is not None
            else "# decoder_sparse_step and mlp_only_layers: experts here, or a dense MLP.",
            "self.moe_enabled = model_args.is_moe_layer(layer_id)",
            "if self.moe_enabled:",
            "    self.moe = MoE(model_args)",
            "else:",
            "    self.feed_forward = FeedForward(model_args.dim, model_args.ffn_dim)",
        ),
        mlp_init_weights=(
            "(self.moe if self.moe_enabled else self.feed_forward).init_weights(init_std)",
        ),
        mlp_setup=("mlp = self.moe if self.moe_enabled else self.feed_forward",),
        mlp="mlp",
    )


def _has_dense_and_sparse(spec: ArchSpec) -> bool:
    moe = spec.features.moe
    return moe is not None and moe.has_dense_layers(spec.n_layers)


def block_view(spec: ArchSpec) -> BlockView:
    x = _facts(spec)
    by_layer = x.per_layer or _has_dense_and_sparse(spec)
    if x.pattern:
        attention = "Attention(model_args, sliding=is_sliding_layer(model_args, layer_id))"
    elif x.per_layer:
        attention = "Attention(model_args, sliding=layer_id >= model_args.max_window_layers)"
    else:
        attention = "Attention(model_args)"
    if x.multipliers:
        text = doc(
            "Pre-norm block with scaled sublayer outputs (m = residual_multiplier).",
            "``h = x + m * attention(norm(x))``, then ``h + m * feed_forward(norm(h))``.",
        )
    else:
        text = "Pre-norm block: ``h = x + attention(norm(x))``, then ``h + feed_forward(norm(h))``."
    if spec.features.moe is not None:
        mlp = "experts" if not _has_dense_and_sparse(spec) else "experts or dense MLP"
        text = text.replace("feed_forward(", f"{'moe' if mlp == 'experts' else 'mlp'}(")
    return BlockView(
        doc=text,
        init_params="layer_id: int, model_args: ModelArgs" if by_layer else "model_args: ModelArgs",
        new=f"TransformerBlock({'layer_id, ' if by_layer else ''}model_args)",
        attention=attention,
        attributes=keep((x.multipliers, "residual_multiplier_attribute")),
        residual_scale=" * self.residual_multiplier" if x.multipliers else "",
        **_mlp_lines(spec),
    )


# ---------------------------------------------------------------- positions, transformer


@dataclass(frozen=True)
class RopeView:
    """The rotary embedding: parts/model/rope.py.j2 and the parts it includes, or
    rope_local_global.py.j2 where the sliding layers rotate with a RoPE of their own."""

    inv_freq_part: str  # rope_inv_freq of this rope type
    cache_part: str  # precompute_rope_cache (and LongRoPE's choice of rows)
    rotary_channels: str  # the ModelArgs field: how many channels of a head rotate
    inv_freq_call: str
    rotate: str  # the part that ends apply_rotary_emb, after cos and sin
    global_doc: str  # rope_local_global: the full-attention layers' cache
    global_inv_freq: str
    local_doc: str  # rope_local_global: the sliding layers' cache
    local_inv_freq: str
    cache_doc: tuple[str, ...] = ()  # precompute_rope_cache's docstring lines (): the default
    truncate: bool = False  # YaRN: the ramp's bounds rounded to whole dimensions
    attention_factor: bool = False  # cos and sin multiplied by rope_attention_factor (YaRN)


def rope_view(spec: ArchSpec) -> RopeView:
    f = spec.features
    rope_type = spec.rope.type
    local_type = f.local_rope.type if f.local_rope is not None else "default"
    global_doc, global_inv_freq = _layer_rope("full-attention", rope_type, "rope", "rope_scaling")
    local_doc, local_inv_freq = _layer_rope("sliding-window", local_type, "rope_local", None)
    return RopeView(
        inv_freq_part=f"rope_inv_freq_{rope_type}",
        cache_part="rope_cache_longrope" if rope_type == "longrope" else "rope_cache",
        rotary_channels=_rotary_channels(spec),
        inv_freq_call=f"rope_inv_freq(args, {'seq_len, ' if rope_type == 'dynamic' else ''}device)",
        rotate=_rotate(spec),
        global_doc=global_doc,
        global_inv_freq=global_inv_freq,
        local_doc=local_doc,
        local_inv_freq=local_inv_freq,
        cache_doc=_cache_doc(spec),
        truncate=rope_type == "yarn" and bool(spec.rope.truncate),
        attention_factor=rope_type == "yarn",
    )


def _cache_doc(spec: ArchSpec) -> tuple[str, ...]:
    latent = spec.features.latent_attention
    if latent is None:
        return ()
    yarn = ("YaRN scales cos and sin by rope_scaling.attention_factor.",)
    if spec.rope.type != "yarn":
        yarn = ()
    if latent.interleaved:
        return (
            "Returns ``[seq_len, 2 * qk_rope_head_dim]``: cos in the first half, sin in the",
            "second, each frequency twice as transformers builds them; :func:`apply_rotary_emb`",
            "turns the adjacent channel pairs by the first half's angles.",
            *yarn,
        )
    return (
        "Returns ``[seq_len, 2 * qk_rope_head_dim]``: cos in the first half, sin in the second.",
        "Angles use transformers' half-split layout (the frequencies repeated twice, not",
        "interleaved), so the checkpoint's projections load without any permutation.",
        *yarn,
    )


def _rotary_channels(spec: ArchSpec) -> str:
    f = spec.features
    if f.latent_attention is not None:
        return "qk_rope_head_dim"
    return "rotary_dim" if f.partial_rotary is not None else "head_dim"


def _rotate(spec: ArchSpec) -> str:
    f = spec.features
    if f.latent_attention is not None and f.latent_attention.interleaved:
        return "rotate_interleaved"
    return "rotate_partial" if f.partial_rotary is not None else "rotate_all"


def _layer_rope(layers: str, rope_type: str, prefix: str, scaling: str | None) -> tuple[str, str]:
    """Docstring and inverse frequencies of the cache of one kind of layer (rope_local_global)."""
    inv_freq = f"rope_inv_freq(args.head_dim, args.{prefix}_theta, device)"
    if rope_type != "linear":
        return f"Rotary cos/sin of the {layers} layers, base ``{prefix}_theta``.", inv_freq
    factor = f"``{prefix}_factor``" + (f" ({scaling}.factor)" if scaling else "")
    text = doc(
        f"Rotary cos/sin of the {layers} layers: base ``{prefix}_theta``, linear scaling.",
        f"Dividing the frequencies by {factor} is the same as dividing the positions.",
    )
    return text, f"{inv_freq} / args.{prefix}_factor"


@dataclass(frozen=True)
class TransformerView:
    """``Transformer``: parts/model/transformer.py.j2 or transformer_learned_positions.py.j2. Each
    field names the part that writes that piece of code."""

    tok_embeddings: str  # __init__
    output_init: str  # end of init_weights: tie the output again, or initialize it
    embed: str  # forward: tokens to h
    layers: str  # forward
    logits: str  # forward
    methods: tuple[str, ...] = ()  # parts after forward
    moe_layers: str = ""  # moe_load_balancing: the list of the blocks' MoE modules


def transformer_view(spec: ArchSpec) -> TransformerView:
    f, x = spec.features, _facts(spec)
    final_softcap = f.softcap is not None and f.softcap.final is not None
    if f.scale_embeddings:
        embed = "embed_scaled"
    elif x.multipliers:
        embed = "embed_multiplied"
    else:
        embed = "embed"
    return TransformerView(
        tok_embeddings="embed_table_padded" if f.padding else "embed_table",
        output_init="output_retie" if spec.tie_word_embeddings else "output_init",
        embed=embed,
        layers="layers_local_global" if f.local_rope else "layers",
        logits="logits_transformed" if final_softcap or x.multipliers else "logits",
        methods=keep(
            (final_softcap, "output_transform_softcapped"),
            (not final_softcap and x.multipliers, "output_transform_scaled"),
            (f.moe is not None, "moe_load_balancing"),
        ),
        moe_layers=""
        if f.moe is None
        else "[layer.moe for layer in self.layers.values()"
        + (" if layer.moe_enabled]" if _has_dense_and_sparse(spec) else "]"),
    )


# ---------------------------------------------------------------- the file


@dataclass(frozen=True)
class LatentView:
    """parts/model/attention_latent.py.j2: multi-head latent attention's pieces."""

    q_lora: bool  # queries through q_a_proj / q_a_layernorm / q_b_proj (else one q_proj)
    q: str  # the query projection, before its split into heads
    linears: str  # init_weights' projections
    norms: str
    scale: tuple[str, ...]  # __init__'s lines setting self.scale, the softmax scale
    latent_eps: float  # the latents' RMSNorm epsilon (transformers' default, not rms_norm_eps)
    rope_rows: tuple[str, ...]  # forward, before the rotation: dynamic NTK's recomputed cache


def latent_view(spec: ArchSpec) -> LatentView | None:
    latent = spec.features.latent_attention
    if latent is None:
        return None
    q_lora = latent.q_lora_rank is not None
    queries = ("self.wq_a", "self.wq_b") if q_lora else ("self.wq",)
    return LatentView(
        q_lora=q_lora,
        q="self.wq_b(self.q_norm(self.wq_a(x)))" if q_lora else "self.wq(x)",
        linears=", ".join((*queries, "self.wkv_a", "self.wkv_b", "self.wo")),
        norms="self.q_norm, self.kv_norm" if q_lora else "self.kv_norm,",
        scale=_latent_scale(spec),
        latent_eps=1e-6,
        rope_rows=keep((spec.rope.type == "dynamic", "rope_dynamic_rows")),
    )


def _yarn_mscale_all_dim(spec: ArchSpec) -> bool:
    """YaRN with mscale_all_dim: transformers scales latent attention's scores by
    mscale(factor, mscale_all_dim) ** 2 as well."""
    rope = spec.rope
    return rope is not None and rope.type == "yarn" and bool(rope.mscale_all_dim)


def _latent_scale(spec: ArchSpec) -> tuple[str, ...]:
    if not _yarn_mscale_all_dim(spec):
        return ("self.scale = self.qk_head_dim**-0.5",)
    return (
        "# YaRN (rope_scaling.mscale_all_dim): scores scale by the square of",
        "# 0.1 * mscale_all_dim * ln(factor) + 1 as well.",
        "mscale = 0.1 * model_args.rope_mscale_all_dim * math.log(model_args.rope_factor) + 1.0",
        "self.scale = self.qk_head_dim**-0.5 * mscale * mscale",
    )


def _latent_doc(spec: ArchSpec) -> str:
    latent = spec.features.latent_attention
    if latent.q_lora_rank is not None:
        queries = (
            f"Queries go through a rank-{latent.q_lora_rank} path (q_lora_rank): ``wq_a`` "
            "(q_a_proj), the RMSNorm ``q_norm`` (q_a_layernorm), ``wq_b`` (q_b_proj)."
        )
    else:
        queries = "Queries come from one projection, ``wq`` (q_proj; q_lora_rank null)."
    rope = (
        "RoPE turns adjacent channel pairs (rope_interleave)."
        if latent.interleaved
        else "RoPE turns the two halves of those channels (rope_interleave false)."
    )
    return doc(
        "Multi-head latent attention: keys and values expand from one low-rank latent.",
        queries,
        f"``wkv_a`` (kv_a_proj_with_mqa) projects each token to a {latent.kv_lora_rank}-wide "
        f"latent (kv_lora_rank) and a {latent.qk_rope_head_dim}-channel rotary key "
        "(qk_rope_head_dim) every head shares; the latent, normed by ``kv_norm`` "
        "(kv_a_layernorm), expands through ``wkv_b`` (kv_b_proj) to each head's "
        f"{latent.qk_nope_head_dim} key channels without positions (qk_nope_head_dim) and "
        f"{latent.v_head_dim} value channels (v_head_dim).",
        "Each head's query and key are its channels without positions, then the rotated ones; "
        "scores scale by (qk_nope_head_dim + qk_rope_head_dim) ** -0.5"
        + (
            " times mscale ** 2, mscale = 0.1 * mscale_all_dim * ln(factor) + 1 (YaRN)."
            if _yarn_mscale_all_dim(spec)
            else "."
        )
        + f" {rope}",
        "``wo`` is o_proj.",
    )


@dataclass(frozen=True)
class ModelView:
    """``model/model.py``: its overview, imports and parts, and each part's view."""

    overview: tuple[str, ...]  # paragraphs, one sentence a line
    stdlib_imports: tuple[str, ...]  # modules
    local_imports: tuple[str, ...]  # the package's modules: import lines
    parts: tuple[str, ...]  # parts/model/<name>.py.j2, in file order
    norm_class: str
    norm_name: str
    forward_params: str  # of attention's and the blocks' forward
    rope_arg: str  # how a block passes the rope cache on to attention
    attention: AttentionView
    feed_forward: FeedForwardView
    block: BlockView
    rope: RopeView | None
    transformer: TransformerView
    latent: LatentView | None = None


def model_view(spec: ArchSpec) -> ModelView:
    f, x = spec.features, _facts(spec)
    norm_class = _choose("norm", f.norm.kind, NORM_CLASSES)
    needs_math = (
        x.rotary and spec.rope.type in ("llama3", "yarn")
    ) or spec.hidden_act == "gelu_new"
    return ModelView(
        overview=overview(spec),
        stdlib_imports=keep((needs_math, "math")),
        local_imports=(
            "from .args import ModelArgs",
            *keep((f.moe is not None, "from .moe import MoE, load_balancing_loss")),
        ),
        parts=keep(
            (f.norm.kind == "rmsnorm_1p", "norm_rmsnorm_1p"),
            (x.rotary, spec.parts.get("rope", "")),
            (x.sliding, "sliding_window_mask"),
            (x.projection_norm, "norm_projection"),
            (True, spec.parts["attention"]),
            (spec.hidden_act in WRITTEN_OUT_GELUS, f"activation_{spec.hidden_act}"),
            (f.moe is None or _has_dense_and_sparse(spec), spec.parts["feed_forward"]),
            (x.pattern, "sliding_layer_pattern"),
            (True, spec.parts["block"]),
            (True, spec.parts["transformer"]),
        ),
        norm_class=norm_class,
        norm_name=NORM_NAMES[f.norm.kind],
        forward_params="x: torch.Tensor, rope_cache: torch.Tensor"
        if x.rotary
        else "x: torch.Tensor",
        rope_arg=", rope_cache" if x.rotary else "",
        attention=attention_view(spec),
        feed_forward=feed_forward_view(spec),
        block=block_view(spec),
        rope=rope_view(spec) if x.rotary else None,
        transformer=transformer_view(spec),
        latent=latent_view(spec),
    )
