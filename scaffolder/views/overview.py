"""The overview of ``model/model.py``: its module docstring, a sentence for each feature the
model has, and the sentences the attention docstring shares with it.

Prose only (sentences for the ``prose`` filter); the parts and their views are in
:mod:`scaffolder.views.model`.
"""

from __future__ import annotations

from scaffolder.features import Features
from scaffolder.spec import ArchSpec


def overview(spec: ArchSpec) -> tuple[str, ...]:
    """The module docstring's paragraphs, a sentence for each feature the model has: the blocks;
    attention; embeddings, logits and the checkpoint."""
    f = spec.features
    softcap = f.softcap
    paragraphs = (
        (
            f"Architecture ({spec.hf_architecture}): {spec.n_layers} {_blocks(f)}.",
            {
                "rmsnorm": "Norms: RMSNorm.",
                "rmsnorm_1p": "Norms: RMSNorm scaling by ``1 + weight``, in float32.",
                "layernorm": "Norms: LayerNorm with weight and bias.",
            }[f.norm.kind],
            _mlp(spec),
            _positions(spec),
        ),
        (
            _heads(spec),
            _biases(spec),
            qk_norm_sentence(f),
            scale_sentence(f),
            _overview_sliding(f),
            _softcap(softcap.attention if softcap else None, "attention scores", "attn"),
            "Each attention head has a learned sink logit (sinks) in its softmax."
            if f.attention_sinks
            else None,
            "Attention probabilities are dropped in training (attention_dropout)."
            if f.attention_dropout
            else None,
        ),
        (
            "Embeddings are scaled by sqrt(hidden_size)." if f.scale_embeddings else None,
            "Token embeddings are multiplied by embedding_multiplier, each sublayer's output by "
            "residual_multiplier before its residual add, and the logits divided by logits_scaling."
            if f.multipliers
            else None,
            _softcap(softcap.final if softcap else None, "output logits", "final"),
            "Input and output embeddings are "
            + ("tied (tie_word_embeddings)." if spec.tie_word_embeddings else "untied."),
            _checkpoint(f),
        ),
    )
    return tuple("\n".join(line for line in lines if line) for lines in paragraphs)


def _heads(spec: ArchSpec) -> str:
    latent = spec.features.latent_attention
    if latent is not None:
        return (
            f"Attention: multi-head latent attention, {spec.n_heads} heads of "
            f"{latent.qk_nope_head_dim} + {latent.qk_rope_head_dim} query/key channels and "
            f"{latent.v_head_dim} value channels, from a {latent.kv_lora_rank}-wide key/value "
            "latent."
        )
    return (
        f"Attention: {spec.n_heads} "
        + (f"query heads sharing {kv_heads(spec)}" if spec.uses_gqa else "heads")
        + f", head_dim {spec.head_dim}."
    )


def _blocks(f: Features) -> str:
    if f.parallel_residual:
        return (
            "parallel-residual blocks: attention and MLP read the same input, "
            "``x + attention(norm(x)) + mlp(norm(x))`` (use_parallel_residual)"
        )
    return {
        "pre": "pre-norm blocks",
        "post": "post-norm blocks, each sublayer's output normed inside the residual",
        "sandwich": "blocks that norm each sublayer's input and output",
    }[f.norm.placement]


def _mlp(spec: ArchSpec) -> str:
    moe = spec.features.moe
    if moe is not None and moe.activation == "clamped_swiglu":
        return "MLP: experts with biases and a clamped SwiGLU."
    if spec.features.gated_mlp:
        return "MLP: SwiGLU." if spec.hidden_act == "silu" else "MLP: GeGLU with the tanh GELU."
    names = spec.features.mlp_names
    return f"MLP: {names} with a GELU ({spec.hidden_act}) between them, no gate."


def _positions(spec: ArchSpec) -> str:
    f = spec.features
    if spec.rope is None:
        return (
            f"Positions: learned absolute embeddings for up to {spec.max_seq_len} positions; "
            "no RoPE."
        )
    text = f"Positions: {spec.rope.type} RoPE"
    if f.partial_rotary is not None:
        factor = f.partial_rotary.factor
        text += (
            f" on the first {int(spec.head_dim * factor)} channels of each head "
            f"(partial_rotary_factor {factor})"
        )
    if f.local_rope is not None:
        text += " in full-attention layers; sliding layers rotate with their own base"
    return text + "."


def _biases(spec: ArchSpec) -> str | None:
    if spec.features.biases.qkv_only and not spec.attention_bias:
        return "The q, k and v projections have biases, the output projection none."
    return {
        (True, True): "Attention and MLP linear layers have biases.",
        (True, False): "Attention linear layers have biases.",
        (False, True): "MLP linear layers have biases.",
    }.get((spec.attention_bias, spec.mlp_bias))


def _overview_sliding(f: Features) -> str | None:
    sliding = f.sliding_window
    if sliding is None or not sliding.active:
        return None
    window = f"a sliding window of {sliding.window} tokens"
    return {
        "all": f"Every layer attends through {window} (sliding_window).",
        "from_max_window_layers": f"Layers {sliding.max_window_layers} and up attend through "
        f"{window}, the layers below to the whole prefix (max_window_layers).",
        "sliding_window_pattern": f"One layer in {sliding.pattern} (the last) attends to the "
        f"whole prefix, the others through {window} (layer_types).",
    }[sliding.layout]


def _softcap(cap: float | None, what: str, field: str) -> str | None:
    if cap is None:
        return None
    return f"The {what} are soft-capped at {cap} ({field}_logit_softcapping)."


def _checkpoint(f: Features) -> str | None:
    if f.legacy_checkpoint_keys:
        return (
            "The checkpoint has module names of its own and fuses q/k/v; "
            "``state_dict_adapter.py`` maps it onto this model's separate projections."
        )
    if f.fused_checkpoint:
        return (
            "The checkpoint fuses q/k/v and gate/up; "
            "``state_dict_adapter.py`` splits them into this model's separate projections."
        )
    return None


# ------------------------------------------------ sentences the attention docstring shares


def kv_heads(spec: ArchSpec) -> str:
    """``"4 key/value heads"``, or ``"1 key/value head"``."""
    return f"{spec.n_kv_heads} key/value head" + ("s" if spec.n_kv_heads > 1 else "")


def qk_norm_sentence(f: Features) -> str | None:
    """What the q/k norms norm, where the model has them."""
    if f.qk_norm is None:
        return None
    if f.qk_norm.kind == "per_head":
        return "Queries and keys are RMS-normed per head (q_norm, k_norm) before RoPE."
    return (
        "Queries and keys are RMS-normed over their whole projections, all heads together "
        "(q_norm, k_norm), before RoPE."
    )


def scale_sentence(f: Features) -> str | None:
    """How scores are scaled, where not by ``head_dim ** -0.5``."""
    if f.query_pre_attn_scalar is not None:
        return "Scores scale by ``query_pre_attn_scalar ** -0.5`` rather than ``head_dim ** -0.5``."
    if f.multipliers is not None:
        return "Scores scale by ``attention_multiplier`` rather than ``head_dim ** -0.5``."
    if not f.scale_attn_weights:
        return "Scores are not scaled by ``head_dim ** -0.5`` (scale_attn_weights false)."
    return None
