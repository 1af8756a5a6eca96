"""The package README's architecture table: one row per config.json field the model uses.

Rows name the config.json field (in the family's own spelling) and say what the package does
with it; a feature the model does not have gets no row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaffolder.literals import ordinal, yaml_literal
from scaffolder.spec import ArchSpec


@dataclass(frozen=True)
class Row:
    field: str
    value: str


def _bias_rows(spec: ArchSpec) -> list[Row]:
    biases = spec.features.biases
    if biases.qkv_only:
        return [
            Row(
                "biases",
                f"q_proj, k_proj, v_proj (fixed by {spec.hf_config_class}); none on o_proj and "
                "the MLP",
            )
        ]
    if biases.everywhere:
        return [Row("biases", "every linear layer")]
    if "use_bias" in biases.fields:
        return [Row("use_bias (every linear layer)", yaml_literal(spec.attention_bias))]
    rows = []
    if "attention_bias" in biases.fields:
        rows.append(Row("attention_bias (q, k, v, o)", yaml_literal(spec.attention_bias)))
    if "mlp_bias" in biases.fields:
        rows.append(Row("mlp_bias", yaml_literal(spec.mlp_bias)))
    if biases.mlp_always:
        rows.append(Row("MLP biases", f"always ({spec.features.mlp_names})"))
    if not biases.fields and not biases.mlp_always:
        rows.append(Row("biases", f"none ({spec.hf_config_class} has no bias switch)"))
    return rows


def _sliding_rows(spec: ArchSpec) -> list[Row]:
    sliding = spec.features.sliding_window
    if sliding is None or not sliding.active:
        return []
    tokens = f"{sliding.window} tokens"
    if sliding.layout == "from_max_window_layers":
        where = f"in layers {sliding.max_window_layers} (max_window_layers) and up"
        return [Row("sliding_window (use_sliding_window)", f"{tokens}, {where}")]
    if sliding.layout == "sliding_window_pattern":
        every = ordinal(sliding.pattern)
        return [Row("sliding_window / layer_types", f"{tokens}; every {every} layer attends fully")]
    return [Row("sliding_window", f"{tokens}, every layer")]


def _rope_rows(spec: ArchSpec) -> list[Row]:
    f = spec.features
    rope = spec.rope
    if rope is None:
        return [Row("positions", f"learned (wpe), {spec.max_seq_len} rows; no RoPE")]
    factor = f", factor {rope.factor}" if rope.factor else ""
    rows = [Row("rope", f"{rope.type}, theta {rope.theta}{factor}")]
    if f.longrope is not None:
        rows.append(
            Row(
                "rope_scaling longrope",
                f"short/long factors ({len(f.longrope.short_factor)} each), "
                f"original_max_position_embeddings {rope.original_max_position_embeddings}, "
                f"attention_factor {yaml_literal(f.longrope.attention_factor)}",
            )
        )
    if rope.type == "yarn":
        truncate = "rounded" if rope.truncate else "not rounded: truncate false"
        rows.append(
            Row(
                "rope_scaling yarn",
                f"original_max_position_embeddings {rope.original_max_position_embeddings}, "
                f"beta_fast {yaml_literal(rope.beta_fast)}, beta_slow "
                f"{yaml_literal(rope.beta_slow)} (ramp bounds {truncate}), attention_factor "
                f"{rope.attention_factor:.6g}",
            )
        )
    if f.partial_rotary is not None:
        rows.append(Row("partial_rotary_factor", yaml_literal(f.partial_rotary.factor)))
    if f.local_rope is not None:
        local = f.local_rope
        local_factor = f", factor {yaml_literal(local.factor)}" if local.factor else ""
        rows.append(
            Row(
                "rope_local_base_freq (sliding layers)",
                f"{local.type}, theta {yaml_literal(local.theta)}{local_factor}",
            )
        )
    return rows


def _norm_rows(spec: ArchSpec) -> list[Row]:
    f = spec.features
    norms = {
        "rmsnorm": "RMSNorm",
        "rmsnorm_1p": "RMSNorm scaling by (1 + weight), in float32",
        "layernorm": "LayerNorm with weight and bias",
    }[f.norm.kind]
    where = {
        "pre": "before attention and MLP",
        "post": "after attention and MLP (post_attention_layernorm, post_feedforward_layernorm), "
        "none before",
        "sandwich": "before and after attention and MLP (post_attention_layernorm, "
        "post_feedforward_layernorm)",
    }[f.norm.placement]
    rows = [Row(f.norm.eps_field, str(spec.norm_eps)), Row("norms", f"{norms}; {where}")]
    if f.qk_norm is not None and f.qk_norm.kind == "per_head":
        rows.append(Row("q_norm / k_norm", "RMSNorm over each head's head_dim, before RoPE"))
    elif f.qk_norm is not None:
        rows.append(
            Row(
                "q_norm / k_norm",
                "RMSNorm over the whole q and k projections (all heads), before RoPE",
            )
        )
    return rows


def _scaling_rows(spec: ArchSpec) -> list[Row]:
    f = spec.features
    rows = []
    if f.scale_embeddings:
        rows.append(Row("embeddings", "scaled by sqrt(hidden_size)"))
    if f.multipliers is not None:
        m = f.multipliers
        rows += [
            Row(
                "embedding / residual / attention multipliers",
                f"{yaml_literal(m.embedding)} / {yaml_literal(m.residual)} / "
                f"{yaml_literal(m.attention)}",
            ),
            Row("logits_scaling", yaml_literal(m.logits)),
        ]
    if f.query_pre_attn_scalar is not None:
        rows.append(
            Row(
                "query_pre_attn_scalar",
                f"{f.query_pre_attn_scalar} (scores scale by its -1/2 power)",
            )
        )
    if not f.scale_attn_weights:
        rows.append(Row("scale_attn_weights", "false (attention scores not scaled)"))
    if f.attention_sinks:
        rows.append(Row("sinks", "a learned logit per query head in each softmax"))
    if f.softcap is not None and f.softcap.attention:
        rows.append(Row("attn_logit_softcapping", yaml_literal(f.softcap.attention)))
    if f.softcap is not None and f.softcap.final:
        rows.append(Row("final_logit_softcapping", yaml_literal(f.softcap.final)))
    return rows


def _other_rows(spec: ArchSpec) -> list[Row]:
    f = spec.features
    rows = []
    if f.names.activation != "hidden_act" or not f.gated_mlp or spec.hidden_act != "silu":
        mlp = "gate/up/down MLP" if f.gated_mlp else "up/down MLP, no gate"
        rows.append(Row(f.names.activation, f"{spec.hidden_act} ({mlp})"))
    if f.parallel_residual:
        rows.append(Row("use_parallel_residual", "true (attention and MLP side by side)"))
    if f.fused_checkpoint:
        rows.append(
            Row("checkpoint", "fused qkv_proj and gate_up_proj (split on load, fused on export)")
        )
    if f.attention_dropout:
        rows.append(
            Row(
                "attention_dropout",
                f"{yaml_literal(f.attention_dropout)} (training only; 0 in the debug flavor)",
            )
        )
    if f.unapplied_dropout:
        named = ", ".join(f"{name} {yaml_literal(p)}" for name, p in f.unapplied_dropout)
        rows.append(Row("dropout", f"{named} in config.json; not applied"))
    if f.padding is not None and f.padding.pad_token_id is not None:
        rows.append(
            Row("pad_token_id", f"{f.padding.pad_token_id} (its embedding row gets no gradient)")
        )
    return rows


def architecture_rows(spec: ArchSpec) -> tuple[Row, ...]:
    """The README's architecture table for ``spec``."""
    names = spec.features.names
    fields = spec.config_fields
    rows = [
        Row(fields.name("dim"), str(spec.dim)),
        Row(fields.name("n_layers"), str(spec.n_layers)),
    ]
    latent = spec.features.latent_attention
    if latent is not None:
        rows += _latent_rows(spec)
    elif names.derived_head_dims:
        rows += [
            Row(fields.name("n_heads"), f"{spec.n_heads} (each with its own keys and values)"),
            Row("head_dim", f"{spec.head_dim} ({fields.name('dim')} / {fields.name('n_heads')})"),
        ]
    else:
        rows += [
            Row("num_attention_heads / num_key_value_heads", f"{spec.n_heads} / {spec.n_kv_heads}"),
            Row("head_dim", str(spec.head_dim)),
        ]
    rows += [
        Row(fields.name("ffn_dim"), str(spec.ffn_dim)),
        Row("vocab_size", str(spec.vocab_size)),
        Row(fields.name("max_seq_len"), str(spec.max_seq_len)),
        *_norm_rows(spec),
        *_rope_rows(spec),
        Row("tie_word_embeddings", yaml_literal(spec.tie_word_embeddings)),
        *_bias_rows(spec),
        *_sliding_rows(spec),
        *_scaling_rows(spec),
        *_other_rows(spec),
        *_expert_rows(spec),
    ]
    return tuple(rows)


def _latent_rows(spec: ArchSpec) -> list[Row]:
    """Multi-head latent attention's heads, ranks and head parts."""
    latent = spec.features.latent_attention
    q_lora = "null (one q_proj)" if latent.q_lora_rank is None else str(latent.q_lora_rank)
    rope = spec.rope
    scale = []
    if rope is not None and rope.type == "yarn" and rope.mscale_all_dim:
        mscale = 0.1 * rope.mscale_all_dim * math.log(rope.factor) + 1.0 if rope.factor > 1 else 1.0
        scale = [
            Row(
                "softmax scale",
                f"(qk_nope_head_dim + qk_rope_head_dim) ** -0.5 * {mscale:.6g} ** 2 "
                "(YaRN's mscale_all_dim)",
            )
        ]
    return [
        *scale,
        Row("num_attention_heads", f"{spec.n_heads} (multi-head latent attention)"),
        Row("q_lora_rank / kv_lora_rank", f"{q_lora} / {latent.kv_lora_rank}"),
        Row(
            "qk_nope_head_dim / qk_rope_head_dim / v_head_dim",
            f"{latent.qk_nope_head_dim} / {latent.qk_rope_head_dim} / {latent.v_head_dim}",
        ),
        Row(
            "rope_interleave",
            "true (adjacent channel pairs)" if latent.interleaved else "false (two halves)",
        ),
    ]


def _group_expert_rows(spec: ArchSpec) -> list[Row]:
    """DeepSeek's mixture: group-limited routing, shared experts, dense first layers."""
    moe = spec.features.moe
    routing = moe.group_routing
    if routing.scoring == "sigmoid":
        how = "sigmoid scores" + (", top-k renormalized" if moe.renormalize else "")
    else:
        how = "softmax over all experts, top-k (not renormalized)"
    rows = [
        Row(f"{moe.experts_field} / num_experts_per_tok", f"{moe.num_experts} / {moe.top_k}"),
        Row(f"{moe.ffn_field} (each expert)", str(moe.ffn_dim)),
        Row("routing", f"{how}, times routed_scaling_factor {routing.scaling_factor}"),
    ]
    if routing.method is not None:
        rows.append(Row("topk_method", routing.method))
    if routing.grouped:
        rows.append(Row("n_group / topk_group", f"{routing.n_group} / {routing.topk_group}"))
    if routing.bias_name is not None:
        rows.append(
            Row(
                routing.bias_name,
                "the selection bias (our expert_bias), updated by auxiliary-loss-free balancing",
            )
        )
    rows += [
        Row(
            "n_shared_experts",
            f"{moe.shared_ffn_dim // moe.ffn_dim} (one ungated MLP of {moe.shared_ffn_dim})",
        ),
        Row(
            "first_k_dense_replace",
            f"{moe.first_dense}: dense MLPs of {spec.ffn_dim} in the first layers",
        ),
        Row(
            "parameters: total / active per token",
            f"{spec.num_params():,} / {spec.active_params():,}",
        ),
    ]
    if spec.features.checkpoint.extra_layers:
        rows.append(
            Row(
                "num_nextn_predict_layers",
                "not generated (transformers does not run multi-token prediction either)",
            )
        )
    return rows


def _expert_rows(spec: ArchSpec) -> list[Row]:
    """The mixture of experts: sizes, routing, which layers, balancing, active parameters."""
    moe = spec.features.moe
    if moe is None:
        return []
    if moe.group_routing is not None:
        return _group_expert_rows(spec)
    if moe.routing == "topk_softmax":
        routing = "top-k router logits, softmax over them"
    elif moe.renormalize:
        routing = "softmax over all experts, top-k renormalized"
    else:
        routing = "softmax over all experts, top-k (not renormalized)"
    sparse = moe.sparse_layers(spec.n_layers)
    rows = [
        Row(f"{moe.experts_field} / num_experts_per_tok", f"{moe.num_experts} / {moe.top_k}"),
        Row(f"{moe.ffn_field} (each expert)", str(moe.ffn_dim)),
        Row("routing", routing),
    ]
    if moe.router_bias:
        rows.append(Row("router bias", "a learned bias on the router logits (router.bias)"))
    if moe.expert_biases:
        rows.append(Row("expert biases", "on each expert's gate, up and down projections"))
    if moe.activation == "clamped_swiglu":
        rows.append(
            Row(
                "swiglu_limit / swiglu_alpha",
                f"{yaml_literal(moe.swiglu_limit)} / {yaml_literal(moe.swiglu_alpha)}: "
                "(up + 1) * gate * sigmoid(alpha * gate), gate clamped above, up both sides",
            )
        )
    if moe.renormalize_field is not None:
        rows.append(Row(moe.renormalize_field, yaml_literal(moe.renormalize)))
    if moe.shared_ffn_dim is not None:
        rows.append(Row("shared_expert_intermediate_size", f"{moe.shared_ffn_dim} (sigmoid-gated)"))
    if moe.sparse_step is not None:
        rows.append(
            Row(
                "decoder_sparse_step / mlp_only_layers",
                f"{moe.sparse_step} / {list(moe.mlp_only_layers)}: experts in {sparse} of "
                f"{spec.n_layers} layers",
            )
        )
    rows += [
        Row("router_aux_loss_coef", str(moe.aux_loss_coef)),
        Row(
            "parameters: total / active per token",
            f"{spec.num_params():,} / {spec.active_params():,}",
        ),
    ]
    return rows


@dataclass(frozen=True)
class TrainingView:
    """What the README's "Train it for real" section adapts to this model."""

    # An 8-GPU node's extra overrides for the full-size run, e.g. expert parallelism.
    node_overrides: str


def training_view(spec: ArchSpec) -> TrainingView:
    """The "Train it for real" section's model-dependent parts."""
    moe = spec.features.moe
    if moe is None:
        return TrainingView(node_overrides="")
    degree = math.gcd(moe.num_experts, 8)  # experts split over up to 8 data-parallel ranks
    if degree == 1:
        return TrainingView(node_overrides="")
    return TrainingView(node_overrides=f" --parallelism.expert_parallel_degree {degree}")
