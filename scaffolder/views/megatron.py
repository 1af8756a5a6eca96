"""The Megatron-LM model preset (``megatron/models/<package>.yaml``) as a list of entries.

Every value the preset sets comes from the spec's dimensions and typed features here, with the
config.json field it comes from as its comment; every feature Megatron's arguments cannot express
becomes a :class:`Note`. The same notes are the package README's Megatron list and the warnings
``scaffold new-model`` prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from scaffolder.features import Moe
from scaffolder.literals import Name, ordinal
from scaffolder.spec import ArchSpec

# Megatron's quick GELU, x * sigmoid(1.702 * x) (megatron/core/fusions/fused_bias_geglu.py).
MEGATRON_QUICK_GELU_ALPHA = 1.702


@dataclass(frozen=True)
class Entry:
    """``key: value  # comment`` (value: a validated scalar or a list of them)."""

    key: str
    value: Any
    comment: str = ""


@dataclass(frozen=True)
class Note:
    """A comment block; ``expressible`` False marks what the Megatron run cannot reproduce."""

    text: str
    expressible: bool = True


@dataclass(frozen=True)
class Section:
    title: str
    items: tuple[Entry | Note, ...]


@dataclass(frozen=True)
class MegatronView:
    sections: tuple[Section, ...]

    @property
    def not_expressible(self) -> tuple[str, ...]:
        """What the Megatron run does differently from the model, one sentence group each."""
        return tuple(
            item.text
            for section in self.sections
            for item in section.items
            if isinstance(item, Note) and not item.expressible
        )


def _size(spec: ArchSpec) -> Section:
    fields = spec.config_fields
    return Section(
        "size",
        (
            Entry("num_layers", spec.n_layers, fields.name("n_layers")),
            Entry("hidden_size", spec.dim, fields.name("dim")),
            Entry("ffn_hidden_size", spec.ffn_dim, fields.name("ffn_dim")),
            Entry("num_attention_heads", spec.n_heads, fields.name("n_heads")),
            Entry("max_position_embeddings", spec.max_seq_len, fields.name("max_seq_len")),
        ),
    )


def _attention(spec: ArchSpec) -> Section:
    f = spec.features
    names = f.names
    fields = spec.config_fields
    items: list[Entry | Note] = []
    if spec.uses_gqa:
        items += [
            Entry(
                "group_query_attention",
                True,
                f"num_key_value_heads ({spec.n_kv_heads}) < num_attention_heads ({spec.n_heads})",
            ),
            Entry(
                "num_query_groups",
                spec.n_kv_heads,
                "num_key_value_heads itself, not heads / kv heads",
            ),
        ]
    elif names.derived_head_dims:
        items.append(
            Entry(
                "group_query_attention",
                False,
                "plain multi-head attention: every head has its own keys and values",
            )
        )
    else:
        items.append(
            Entry(
                "group_query_attention",
                False,
                "num_key_value_heads == num_attention_heads: plain multi-head attention",
            )
        )
    if names.derived_head_dims:
        kv_comment = f"{fields.name('dim')} / {fields.name('n_heads')}; always explicit"
    elif spec.explicit_head_dim:
        kv_comment = "head_dim; always explicit"
    else:
        kv_comment = "head_dim (= hidden_size / num_attention_heads); always explicit"
    latent = f.latent_attention
    if latent is not None:
        items += _latent_attention(spec)
    else:
        items.append(Entry("kv_channels", spec.head_dim, kv_comment))
    if f.biases.qkv_only and not spec.attention_bias:
        qkv = Entry(
            "add_qkv_bias",
            True,
            f"{spec.hf_architecture}: q_proj, k_proj, v_proj always have biases, o_proj none",
        )
    elif f.biases.everywhere:
        qkv = Entry("add_qkv_bias", True, f"{spec.hf_architecture}: every linear layer has a bias")
    else:
        field = "use_bias" if "use_bias" in f.biases.fields else "attention_bias"
        qkv = Entry("add_qkv_bias", spec.attention_bias, field)
    items.append(qkv)
    if spec.attention_bias and not spec.mlp_bias and not _biased_experts_only(spec):
        items.append(
            Note(
                "attention_bias also biases o_proj, but Megatron biases its attention output "
                "projection only through add_bias_linear, which would bias the MLP too "
                "(mlp_bias is false). This Megatron model has no o_proj bias.",
                expressible=False,
            )
        )
    items.append(
        Entry(
            "attention_softmax_in_fp32", True, "transformers computes the attention softmax in fp32"
        )
    )
    if not f.scale_attn_weights:
        items.append(
            Note(
                "scale_attn_weights false: attention scores are not scaled; Megatron scales them "
                "by kv_channels ** -0.5.",
                expressible=False,
            )
        )
    if f.unapplied_dropout:
        named = ", ".join(f"{name} {p}" for name, p in f.unapplied_dropout)
        items += [
            Note(
                f"The config's dropout ({named}) is not applied: the generated model trains "
                "without dropout, and this preset matches it."
            ),
            Entry("attention_dropout", 0.0),
        ]
    elif f.attention_dropout:
        items.append(Entry("attention_dropout", f.attention_dropout, "attention_dropout"))
    else:
        items.append(
            Entry(
                "attention_dropout",
                0.0,
                "transformers' attention_dropout default; no dropout when pre-training",
            )
        )
    items += _sliding_window(spec)
    scalar = f.query_pre_attn_scalar
    if scalar is not None and scalar == spec.head_dim:
        items.append(
            Note(
                f"query_pre_attn_scalar ({scalar}) equals head_dim: scores scale by Megatron's "
                "1/sqrt(kv_channels)."
            )
        )
    elif scalar is not None:
        items.append(
            Note(
                f"scores scale by query_pre_attn_scalar ** -0.5 ({scalar}); Megatron scales by "
                f"kv_channels ** -0.5 ({spec.head_dim}).",
                expressible=False,
            )
        )
    if f.attention_sinks:
        items.append(
            Entry(
                "softmax_type",
                Name("learnable"),
                "sinks: one learned logit per head in the softmax (Megatron's learnable offset)",
            )
        )
    if f.softcap is not None and f.softcap.attention:
        items.append(
            Note(
                "attention scores are soft-capped, cap * tanh(scores / cap) with "
                f"attn_logit_softcapping {f.softcap.attention}; Megatron has no such step.",
                expressible=False,
            )
        )
    return Section("attention", tuple(items))


def _sliding_window(spec: ArchSpec) -> list[Entry | Note]:
    sliding = spec.features.sliding_window
    if sliding is None or not sliding.active:
        return []
    left = sliding.window - 1
    items: list[Entry | Note] = [
        Note(
            f"sliding_window {sliding.window}: a query sees itself and the {left} tokens before "
            f"it, i.e. Megatron's (left, right) window {left}, 0 (needs the TransformerEngine or "
            "flash attention backend)."
        ),
        Entry("window_size", [left, 0]),
    ]
    if sliding.layout == "from_max_window_layers":
        first = sliding.max_window_layers
        items += [
            Note(
                f"use_sliding_window with max_window_layers {first}: the layers below it attend "
                "fully, the rest slide; Megatron's per-layer pattern, 1 = sliding window, "
                "0 = full attention."
            ),
            Entry("window_attn_skip_freq", f"[0]*{first}+[1]*{spec.n_layers - first}"),
        ]
    elif sliding.layout == "sliding_window_pattern":
        items += [
            Note(
                f"layer_types: every {ordinal(sliding.pattern)} layer attends fully, the others "
                "slide; "
                "Megatron's skip frequency: layers whose number (from 1) it divides use full "
                "attention."
            ),
            Entry("window_attn_skip_freq", sliding.pattern),
        ]
    return items


def _biased_experts_only(spec: ArchSpec) -> bool:
    """Every layer's MLP is experts with biases: Megatron's add_bias_linear biases exactly them
    and the attention output projection."""
    moe = spec.features.moe
    return moe is not None and moe.expert_biases and not moe.has_dense_layers(spec.n_layers)


def _clamped_swiglu(moe: Any) -> list[Entry | Note]:
    """The experts' clamped SwiGLU, ``(up + 1) * gate * sigmoid(alpha * gate)``: Megatron's
    quick GeGLU (alpha fixed at 1.702) with a linear offset of 1 and its clamp."""
    items: list[Entry | Note] = [
        Entry("swiglu", False, "the experts' gate is clamped: quick_geglu, below"),
        Entry(
            "quick_geglu",
            True,
            "gate * sigmoid(1.702 * gate)"
            + (": swiglu_alpha 1.702" if moe.swiglu_alpha == MEGATRON_QUICK_GELU_ALPHA else ""),
        ),
        Entry("glu_linear_offset", 1.0, "(up + 1): the up projection plus one"),
        Entry(
            "activation_func_clamp_value",
            moe.swiglu_limit,
            "swiglu_limit: gate clamped above, up on both sides",
        ),
    ]
    if moe.swiglu_alpha != MEGATRON_QUICK_GELU_ALPHA:
        items.append(
            Note(
                f"swiglu_alpha {moe.swiglu_alpha}: the experts' gate is gate * sigmoid(alpha * "
                f"gate); Megatron's quick GELU fixes alpha at {MEGATRON_QUICK_GELU_ALPHA}.",
                expressible=False,
            )
        )
    return items


def _mlp(spec: ArchSpec) -> Section:
    f = spec.features
    activation = f.names.activation
    mlp_names = f.mlp_names
    items: list[Entry | Note] = []
    if not f.gated_mlp:
        items.append(
            Entry("swiglu", False, f"{mlp_names}: up projection, GELU, down projection; no gate")
        )
        if spec.hidden_act == "gelu":
            items.append(
                Entry(
                    "bias_gelu_fusion",
                    False,
                    f"{activation} gelu: the exact (erf) GELU, not the fused kernel's tanh one",
                )
            )
        elif spec.mlp_bias:
            items.append(
                Entry(
                    "bias_gelu_fusion",
                    True,
                    f"{activation} {spec.hidden_act}: the tanh GELU of Megatron's fused kernel",
                )
            )
        else:
            items.append(
                Note(
                    f"{activation} {spec.hidden_act} is GELU's tanh approximation; Megatron "
                    "computes it only in its fused bias-GELU kernel, which needs MLP biases "
                    "(this config has none), so the Megatron MLP uses the exact GELU.",
                    expressible=False,
                )
            )
    elif spec.hidden_act == "gelu_pytorch_tanh":
        items += [
            Note(
                f"the MLP is GeGLU, a tanh-GELU gate ({activation} {spec.hidden_act}) times the up "
                "projection. Megatron's arguments gate only with SiLU: the same gate/up/down "
                "shapes, a different activation.",
                expressible=False,
            ),
            Entry("swiglu", True),
        ]
    elif f.moe is not None and f.moe.activation == "clamped_swiglu":
        items += _clamped_swiglu(f.moe)
    else:
        items.append(
            Entry(
                "swiglu",
                True,
                f"hidden_act {spec.hidden_act} with gate/up/down projections: SwiGLU",
            )
        )
    if _biased_experts_only(spec):
        also = ", o_proj too (attention_bias)" if spec.attention_bias else ""
        items.append(Entry("add_bias_linear", True, f"the experts' projections have biases{also}"))
    elif "use_bias" in f.biases.fields:
        what = "every linear layer has a bias" if spec.mlp_bias else "no biases"
        items.append(Entry("add_bias_linear", spec.mlp_bias, f"use_bias: {what}"))
    elif f.biases.everywhere:
        items.append(
            Entry("add_bias_linear", True, f"{spec.hf_architecture}: every linear layer has a bias")
        )
    elif f.biases.mlp_always:
        also = ", attention too (attention_bias)" if spec.attention_bias else ""
        items.append(
            Entry("add_bias_linear", True, f"the MLP ({mlp_names}) always has biases{also}")
        )
    else:
        both = (
            " (with attention_bias: every linear layer has a bias)"
            if spec.attention_bias and spec.mlp_bias
            else ""
        )
        items.append(Entry("add_bias_linear", spec.mlp_bias, f"mlp_bias{both}"))
    if spec.mlp_bias and not spec.attention_bias:
        items.append(
            Note(
                "Megatron's add_bias_linear also biases the q/k/v and attention output "
                "projections, which this config (attention_bias false) has no bias on.",
                expressible=False,
            )
        )
    return Section("MLP", tuple(items))


def _normalization(spec: ArchSpec) -> Section:
    f = spec.features
    eps = f.norm.eps_field
    if f.norm.kind == "layernorm":
        normalization = Entry("normalization", Name("LayerNorm"), "LayerNorm with weight and bias")
    elif f.norm.kind == "rmsnorm_1p":
        normalization = Entry("normalization", Name("RMSNorm"), "RMSNorm scaling by (1 + weight)")
    else:
        normalization = Entry("normalization", Name("RMSNorm"), "RMSNorm")
    items: list[Entry | Note] = [
        normalization,
        Entry("layernorm_epsilon", spec.norm_eps, f"{eps} (Megatron's flag: --norm-epsilon)"),
    ]
    if f.norm.kind == "rmsnorm_1p":
        items.append(
            Entry(
                "layernorm_zero_centered_gamma",
                True,
                "norms scale by (1 + weight): TransformerEngine's zero-centered gamma",
            )
        )
    else:
        items.append(Entry("layernorm_zero_centered_gamma", False))
    if f.qk_norm is not None and f.qk_norm.kind == "per_head":
        items.append(
            Entry(
                "qk_layernorm", True, "q_norm, k_norm: queries and keys normed per head before RoPE"
            )
        )
    elif f.latent_attention is not None:
        items.append(Entry("qk_layernorm", True, "q_a_layernorm and kv_a_layernorm on the latents"))
    else:
        items.append(Entry("qk_layernorm", False))
    if f.parallel_residual:
        items.append(
            Note(
                "use_parallel_residual: attention and MLP read the same input, x + attn(ln1(x)) "
                "+ mlp(ln2(x)); Megatron's GPT blocks are sequential (the MLP reads "
                "x + attn(ln1(x))).",
                expressible=False,
            )
        )
    if f.norm.placement == "sandwich":
        items.append(
            Note(
                "the attention and MLP outputs are normed too before their residual adds "
                "(post_attention_layernorm, post_feedforward_layernorm); Megatron norms sublayer "
                "inputs only.",
                expressible=False,
            )
        )
    if f.norm.placement == "post":
        items.append(
            Note(
                "the attention and MLP outputs are normed before their residual adds and their "
                "inputs are not (post_attention_layernorm, post_feedforward_layernorm); Megatron "
                "norms the sublayer inputs, so this preset's blocks are pre-norm.",
                expressible=False,
            )
        )
    if f.qk_norm is not None and f.qk_norm.kind == "projection":
        items.append(
            Note(
                "q_norm / k_norm norm all heads of q, and of k, together (one RMSNorm over each "
                "whole projection); Megatron's qk_layernorm norms every head on its own, so this "
                "preset has no q/k norm.",
                expressible=False,
            )
        )
    return Section("normalization", tuple(items))


def _positions(spec: ArchSpec) -> Section:
    f = spec.features
    rope = spec.rope
    if rope is None:
        return Section(
            "positions",
            (
                Entry(
                    "position_embedding_type",
                    Name("learned_absolute"),
                    "wpe: a learned embedding per position, up to "
                    + spec.config_fields.name("max_seq_len"),
                ),
                Entry("add_position_embedding", True, "the position table (Primus's base: false)"),
            ),
        )
    items: list[Entry | Note] = [Entry("position_embedding_type", Name("rope"))]
    if f.local_rope is not None:
        items.append(
            Note(
                f"sliding-window layers rotate with their own RoPE, {f.local_rope.type} with base "
                f"rope_local_base_freq {f.local_rope.theta}; Megatron has one rotary_base, the "
                "full-attention layers' below.",
                expressible=False,
            )
        )
    if rope.theta == int(rope.theta):
        items.append(Entry("rotary_base", int(rope.theta), "rope_theta"))
    else:
        items.append(
            Entry(
                "rotary_base",
                rope.theta,
                "rope_theta (Megatron's command line takes an integer; YAML keeps the fraction)",
            )
        )
    if f.partial_rotary is not None:
        items.append(
            Entry(
                "rotary_percent",
                f.partial_rotary.factor,
                "partial_rotary_factor: rotary covers that share of head_dim",
            )
        )
    else:
        items.append(Entry("rotary_percent", 1.0, "rotary covers the whole head_dim"))
    if f.latent_attention is not None:
        interleaved = Entry(
            "rotary_interleaved",
            False,
            "multi-latent attention takes the rotary channels as adjacent pairs itself",
        )
    else:
        interleaved = Entry(
            "rotary_interleaved",
            False,
            "transformers' rotate_half layout (two halves), not interleaved pairs",
        )
    items.append(interleaved)
    items += _rope_scaling(spec)
    return Section("positions", tuple(items))


def _rope_scaling(spec: ArchSpec) -> list[Entry | Note]:
    """Megatron's GPT model scales rope only by Llama 3's frequency bands, always with its
    defaults (factor 8, low/high frequency factors 1 and 4, 8192 original positions): neither
    rope_scaling_factor nor rotary_seq_len_interpolation_factor reaches the model."""
    rope = spec.rope
    if rope.type == "llama3":
        megatron = (8.0, 1.0, 4.0, 8192)
        given = (
            rope.factor,
            rope.low_freq_factor,
            rope.high_freq_factor,
            rope.original_max_position_embeddings,
        )
        items: list[Entry | Note] = [Entry("use_rope_scaling", True, "rope_scaling llama3")]
        if given == megatron:
            items.append(
                Note(
                    "rope_scaling factor 8.0, low_freq_factor 1.0, high_freq_factor 4.0 and "
                    "original_max_position_embeddings 8192 are the values Megatron's "
                    "RotaryEmbedding fixes; none of them is an argument it reads."
                )
            )
        else:
            items.append(
                Note(
                    "Megatron scales rope with factor 8.0, low_freq_factor 1.0, high_freq_factor "
                    "4.0 and original_max_position_embeddings 8192 whatever the arguments say; "
                    f"this config has {given[0]}, {given[1]}, {given[2]} and {given[3]}, so "
                    "Megatron's rotary frequencies differ from transformers'.",
                    expressible=False,
                )
            )
        return items
    items = [Entry("use_rope_scaling", False)]
    if rope.type == "linear":
        items.append(
            Note(
                f"rope_scaling linear (factor {rope.factor}): transformers divides the positions "
                "by the factor; Megatron's GPT model reads no interpolation factor, so this "
                "preset rotates with plain rope.",
                expressible=False,
            )
        )
    if rope.type == "dynamic":
        items.append(
            Note(
                f"rope_scaling dynamic (factor {rope.factor}): Megatron has no dynamic NTK "
                f"scaling. Plain rope is exact up to max_position_embeddings ({spec.max_seq_len}) "
                "tokens, where transformers does not rescale either; keep seq_length within it.",
                expressible=False,
            )
        )
    elif rope.type == "yarn" and spec.features.latent_attention is not None:
        items += _latent_yarn(spec)
    elif rope.type == "yarn":
        items.append(
            Note(
                f"rope_scaling yarn (factor {rope.factor}, original_max_position_embeddings "
                f"{rope.original_max_position_embeddings}, beta_fast {rope.beta_fast}, beta_slow "
                f"{rope.beta_slow}; cos and sin scaled by attention_factor "
                f"{rope.attention_factor:.6g}): Megatron's arguments set YaRN only for "
                "multi-latent attention (--rope-type yarn); --position-embedding-type has no yarn "
                "for standard attention, so this preset rotates with plain rope.",
                expressible=False,
            )
        )
    elif rope.type == "longrope":
        items.append(
            Note(
                "rope_scaling longrope (one short_factor / long_factor per frequency, switching at "
                f"original_max_position_embeddings {rope.original_max_position_embeddings}; cos "
                f"and sin scaled by attention_factor {spec.features.longrope.attention_factor}): "
                "Megatron has no LongRoPE, so this preset rotates with plain rope.",
                expressible=False,
            )
        )
    return items


def _embeddings(spec: ArchSpec) -> Section:
    f = spec.features
    items: list[Entry | Note] = [
        Entry(
            "untie_embeddings_and_output_weights",
            not spec.tie_word_embeddings,
            f"tie_word_embeddings: {str(spec.tie_word_embeddings).lower()}",
        )
    ]
    if f.scale_embeddings:
        items.append(
            Note(
                "token embeddings are multiplied by sqrt(hidden_size) before the first block; "
                "Megatron's GPT embedding has no such scale.",
                expressible=False,
            )
        )
    if f.softcap is not None and f.softcap.final:
        items.append(
            Note(
                "output logits are soft-capped, cap * tanh(logits / cap) with "
                f"final_logit_softcapping {f.softcap.final}; Megatron has no such step.",
                expressible=False,
            )
        )
    if f.multipliers is not None:
        m = f.multipliers
        items.append(
            Note(
                f"embedding_multiplier {m.embedding} (embeddings), residual_multiplier "
                f"{m.residual} (sublayer outputs), attention_multiplier {m.attention} (the "
                f"softmax scale) and logits_scaling {m.logits} (logits divided by it): "
                "Megatron's GPT model has none of them.",
                expressible=False,
            )
        )
    items.append(Entry("init_method_std", spec.initializer_range, "initializer_range"))
    if f.unapplied_dropout:
        items.append(Entry("hidden_dropout", 0.0, "not applied, as attention_dropout above"))
    else:
        items.append(
            Entry("hidden_dropout", 0.0, f"{spec.hf_architecture} has no residual dropout")
        )
    return Section("embeddings, initialization, regularization", tuple(items))


def _latent_yarn(spec: ArchSpec) -> list[Entry | Note]:
    """YaRN with multi-latent attention: Megatron's MLA reads it (--rope-type yarn)."""
    rope = spec.rope
    items: list[Entry | Note] = [
        Entry("rope_type", Name("yarn"), "rope_scaling yarn, for multi-latent attention"),
        Entry("rotary_scaling_factor", rope.factor, "rope_scaling.factor"),
        Entry("mscale", rope.mscale if rope.mscale is not None else 1.0, "rope_scaling.mscale"),
        Entry(
            "mscale_all_dim",
            rope.mscale_all_dim if rope.mscale_all_dim is not None else 0.0,
            "rope_scaling.mscale_all_dim: also scales the scores by its mscale squared",
        ),
    ]
    original = rope.original_max_position_embeddings
    if original == 4096:
        items.append(
            Note(
                "rope_scaling.original_max_position_embeddings 4096 is the value Megatron's "
                "multi-latent attention fixes (MLATransformerConfig; no argument sets it)."
            )
        )
    else:
        items.append(
            Note(
                f"rope_scaling.original_max_position_embeddings {original}: Megatron's "
                "multi-latent attention fixes it at 4096 (no argument sets it).",
                expressible=False,
            )
        )
    if (rope.beta_fast, rope.beta_slow) != (32.0, 1.0):
        items.append(
            Note(
                f"rope_scaling beta_fast {rope.beta_fast} and beta_slow {rope.beta_slow}: "
                "Megatron's multi-latent attention fixes them at 32 and 1 (no arguments).",
                expressible=False,
            )
        )
    if not rope.attention_factor_inferred:
        items.append(
            Note(
                f"rope_scaling.attention_factor {rope.attention_factor:.6g}: Megatron derives "
                "the cos/sin scale from mscale and mscale_all_dim and reads no attention_factor.",
                expressible=False,
            )
        )
    return items


def _latent_attention(spec: ArchSpec) -> list[Entry | Note]:
    """Multi-head latent attention: Megatron's MLA with the config's ranks and head parts."""
    latent = spec.features.latent_attention
    items: list[Entry | Note] = [
        Entry("kv_channels", latent.v_head_dim, "v_head_dim (MLA sizes its heads below)"),
        Entry("multi_latent_attention", True, "q_lora_rank / kv_lora_rank latents"),
        Entry("q_lora_rank", latent.q_lora_rank, "q_lora_rank (null: one q_proj)"),
        Entry("kv_lora_rank", latent.kv_lora_rank, "kv_lora_rank"),
        Entry("qk_head_dim", latent.qk_nope_head_dim, "qk_nope_head_dim: channels without RoPE"),
        Entry("qk_pos_emb_head_dim", latent.qk_rope_head_dim, "qk_rope_head_dim"),
        Entry("v_head_dim", latent.v_head_dim, "v_head_dim"),
    ]
    if not latent.interleaved:
        items.append(
            Note(
                "rope_interleave is false: Megatron's multi-latent attention always takes the "
                "rotary channels as adjacent pairs (the interleaved layout), so its "
                "checkpoint conversion must permute them.",
                expressible=False,
            )
        )
    return items


def _group_routing(moe: Moe) -> list[Entry | Note]:
    """DeepSeek's router: score function, groups, scaling and the selection bias."""
    routing = moe.group_routing
    items: list[Entry | Note] = [Entry("moe_router_score_function", Name(routing.scoring))]
    if routing.scoring == "softmax":
        items.append(
            Entry(
                "moe_router_pre_softmax",
                True,
                "softmax over every expert, then top-k, not renormalized",
            )
        )
    else:
        items.append(
            Entry(
                "moe_router_pre_softmax",
                False,
                "sigmoid scores of every expert, then top-k"
                + (", renormalized (norm_topk_prob)" if moe.renormalize else ""),
            )
        )
    if routing.grouped:
        items += [
            Entry("moe_router_num_groups", routing.n_group, "n_group"),
            Entry("moe_router_group_topk", routing.topk_group, "topk_group"),
        ]
        if not routing.top2:
            items.append(
                Note(
                    "group_limited_greedy scores a group by its best expert; Megatron's group "
                    "routing sums each group's top (moe_router_topk / moe_router_group_topk) "
                    "scores, so it can choose other groups.",
                    expressible=False,
                )
            )
    items += [
        Entry("moe_router_topk_scaling_factor", routing.scaling_factor, "routed_scaling_factor"),
        Entry("moe_router_dtype", Name("fp32"), "router scores in float32, as transformers"),
    ]
    if routing.bias_name is not None:
        items += [
            Entry(
                "moe_router_enable_expert_bias",
                True,
                f"{routing.bias_name}: auxiliary-loss-free balancing",
            ),
            Entry("moe_router_bias_update_rate", 0.001, "the package's expert_bias_update_rate"),
            Entry(
                "moe_router_load_balancing_type",
                [Name("none")],
                "no auxiliary loss: transformers computes none for this model",
            ),
        ]
    else:
        items.append(
            Entry(
                "moe_router_load_balancing_type",
                [Name("none")],
                "transformers computes no load-balancing loss for this model",
            )
        )
    return items


def _experts(spec: ArchSpec) -> Section | None:
    """The mixture of experts: sizes, which layers, routing, balancing, grouped GEMM."""
    moe = spec.features.moe
    if moe is None:
        return None
    items: list[Entry | Note] = [
        Entry("num_experts", moe.num_experts, moe.experts_field),
        Entry("moe_router_topk", moe.top_k, "num_experts_per_tok"),
        Entry("moe_ffn_hidden_size", moe.ffn_dim, f"{moe.ffn_field}: each expert's hidden size"),
    ]
    if moe.has_dense_layers(spec.n_layers):
        pattern = [int(moe.is_sparse(i)) for i in range(spec.n_layers)]
        which = (
            "first_k_dense_replace"
            if moe.first_dense is not None
            else "decoder_sparse_step, mlp_only_layers"
        )
        items.append(
            Entry(
                "moe_layer_freq",
                pattern,
                f"1: experts, 0: a dense MLP of ffn_hidden_size ({which})",
            )
        )
    else:
        items.append(Entry("moe_layer_freq", 1, "experts in every layer"))
    if moe.shared_ffn_dim is not None and moe.layout.shared_gate is None:
        items += [
            Entry(
                "moe_shared_expert_intermediate_size",
                moe.shared_ffn_dim,
                f"n_shared_experts * {moe.ffn_field}",
            ),
            Entry("moe_shared_expert_gate", False, "the shared experts' output is not gated"),
        ]
    elif moe.shared_ffn_dim is not None:
        items += [
            Entry(
                "moe_shared_expert_intermediate_size",
                moe.shared_ffn_dim,
                "shared_expert_intermediate_size",
            ),
            Entry("moe_shared_expert_gate", True, "shared_expert_gate: sigmoid gate on its output"),
        ]
    if moe.group_routing is not None:
        items += _group_routing(moe)
        items += [
            Entry("moe_grouped_gemm", True, "experts as one grouped GEMM"),
            Entry("moe_token_dispatcher_type", Name("alltoall"), "tokens to experts by all-to-all"),
        ]
        return Section("experts", tuple(items))
    renormalized = moe.routing == "topk_softmax" or moe.renormalize
    if renormalized:
        why = (
            "softmax over the top-k logits"
            if moe.routing == "topk_softmax"
            else "top-k of the softmax, renormalized"
            + (f" ({moe.renormalize_field})" if moe.renormalize_field else "")
        )
        items.append(
            Entry(
                "moe_router_pre_softmax", False, f"{why}: the same weights as top-k, then softmax"
            )
        )
    else:
        items.append(
            Entry(
                "moe_router_pre_softmax",
                True,
                f"softmax over every expert, then top-k, not renormalized ({moe.renormalize_field} "
                "false)",
            )
        )
    items += [
        Entry("moe_router_score_function", Name("softmax")),
        *(
            (
                Note(
                    "the router's logits have a learned bias (router.bias); Megatron's router "
                    "linear has none (moe_router_enable_expert_bias is a selection-only bias "
                    "updated from token counts, not a trained logit bias).",
                    expressible=False,
                ),
            )
            if moe.router_bias
            else ()
        ),
        Entry("moe_router_dtype", Name("fp32"), "router scores in float32, as transformers"),
        Entry("moe_router_load_balancing_type", [Name("aux_loss")]),
        Entry("moe_aux_loss_coeff", [moe.aux_loss_coef], "router_aux_loss_coef"),
        Note(
            "transformers' load-balancing loss pools the routing statistics of all layers into "
            "one loss; Megatron's aux_loss adds one per layer. Both push towards even routing, "
            "with different gradients.",
            expressible=False,
        ),
        Entry("moe_grouped_gemm", True, "experts as one grouped GEMM"),
        Entry("moe_token_dispatcher_type", Name("alltoall"), "tokens to experts by all-to-all"),
    ]
    return Section("experts", tuple(items))


@cache
def primus_presets() -> dict[str, Any]:
    """Primus's own model presets for models the generator supports (scaffolder/data/)."""
    data = resources.files("scaffolder").joinpath("data/primus_model_presets.json").read_text()
    return json.loads(data)


def _plain(value: Any) -> Any:
    """A YAML value as Primus compares it: names as strings, a one-item list as its item."""
    if isinstance(value, list):
        value = [_plain(item) for item in value]
        return value[0] if len(value) == 1 else value
    return str(value) if isinstance(value, Name) else value


def _primus_preset(sections: list[Section]) -> Section | None:
    """Where Primus ships a preset for this very model, the values in which it differs."""
    ours = {
        item.key: _plain(item.value)
        for section in sections
        for item in section.items
        if isinstance(item, Entry)
    }
    table = primus_presets()
    for name, preset in table["presets"].items():
        if any(ours.get(key) != preset.get(key) for key in table["match_keys"]):
            continue
        differ = [
            f"{key} {_plain(value)!r} (here {ours[key]!r})"
            for key, value in preset.items()
            if key in ours and str(_plain(value)) != str(ours[key])
        ]
        if not differ:
            text = f"Primus's own preset for this model, {name}, sets the same values."
        else:
            text = (
                f"Primus ships its own preset for this model, {name} (Primus "
                f"{table['commit'][:7]}), which differs in: {'; '.join(differ)}. This preset "
                "follows config.json, the Hugging Face model's own description (and "
                "transformers' defaults where it is silent)."
            )
        return Section("Primus's preset for this model", (Note(text),))
    return None


def megatron_view(spec: ArchSpec) -> MegatronView:
    """The architecture sections of the model preset of ``spec`` (the tokenizer section is the
    template's: it names the source)."""
    sections = [
        _size(spec),
        _attention(spec),
        _mlp(spec),
        *((_experts(spec),) if spec.features.moe is not None else ()),
        _normalization(spec),
        _positions(spec),
        _embeddings(spec),
    ]
    preset = _primus_preset(sections)
    return MegatronView(sections=(*sections, *((preset,) if preset is not None else ())))
