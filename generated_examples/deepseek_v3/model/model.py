"""deepseek_v3 as plain, single-device PyTorch.

Architecture (DeepseekV3ForCausalLM): 61 pre-norm blocks. Norms: RMSNorm. MLP: SwiGLU. Positions:
yarn RoPE.

Attention: multi-head latent attention, 128 heads of 128 + 64 query/key channels and 128 value
channels, from a 512-wide key/value latent.

Input and output embeddings are untied.

Parallelism is applied from ``infra/``; nothing here knows about it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .args import ModelArgs
from .moe import MoE, load_balancing_loss


def rope_inv_freq(args: ModelArgs, device: torch.device | None) -> torch.Tensor:
    """Inverse frequencies of YaRN (rope_scaling.rope_type "yarn").

    A frequency that turns more than ``beta_fast`` times over the
    ``original_max_position_embeddings`` positions of pretraining is kept; one that turns fewer than
    ``beta_slow`` times is divided by ``factor`` (interpolated); a linear ramp over the dimensions
    blends the two in between.

    The ramp's bounds are rounded outward to whole dimensions (rope_scaling.truncate).
    """
    dim = args.qk_rope_head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
    pos_freqs = args.rope_theta**exponents
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (args.rope_factor * pos_freqs)

    def correction_dim(rotations: float) -> float:
        """The dimension whose frequency turns ``rotations`` times over the original length."""
        turns = args.rope_original_max_seq_len / (rotations * 2 * math.pi)
        return dim * math.log(turns) / (2 * math.log(args.rope_theta))

    low = max(math.floor(correction_dim(args.rope_beta_fast)), 0)
    high = min(math.ceil(correction_dim(args.rope_beta_slow)), dim - 1)
    if low == high:
        high += 0.001  # a ramp of zero width would divide by zero
    ramp = (torch.arange(dim // 2, dtype=torch.float32, device=device) - low) / (high - low)
    # The share of each frequency kept from plain RoPE: 1 below ``low``, 0 above ``high``.
    keep = 1 - ramp.clamp(0, 1)
    return interpolation * (1 - keep) + extrapolation * keep


def precompute_rope_cache(
    args: ModelArgs, seq_len: int, device: torch.device | None = None
) -> torch.Tensor:
    """cos and sin of the rotary angles for positions ``0 .. seq_len - 1``.

    Returns ``[seq_len, 2 * qk_rope_head_dim]``: cos in the first half, sin in the
    second, each frequency twice as transformers builds them; :func:`apply_rotary_emb`
    turns the adjacent channel pairs by the first half's angles.
    YaRN scales cos and sin by rope_scaling.attention_factor.
    """
    inv_freq = rope_inv_freq(args, device)
    positions = torch.arange(seq_len, dtype=torch.float, device=device)
    freqs = torch.outer(positions, inv_freq)
    angles = torch.cat((freqs, freqs), dim=-1)
    return torch.cat((angles.cos(), angles.sin()), dim=-1) * args.rope_attention_factor


def apply_rotary_emb(
    xq: torch.Tensor, xk: torch.Tensor, rope_cache: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys ``[batch, heads, seq, head_dim]`` by their positions' angles.

    ``rope_cache`` may hold more positions than ``seq``: the first ``seq`` are used. Under tensor
    parallelism the blocks see sequence shards and only attention sees the whole sequence.
    """
    cos, sin = rope_cache[: xq.shape[2]].chunk(2, dim=-1)
    # Adjacent channels (x0, x1), (x2, x3), ... turn together by one frequency: the first half
    # of the cache holds each pair's angle. The rotated pairs come out as evens then odds, as
    # transformers writes them; queries and keys alike, so their products are unchanged.
    half = cos.shape[-1] // 2
    cos, sin = cos[..., :half], sin[..., :half]
    q1, q2 = xq[..., 0::2], xq[..., 1::2]
    k1, k2 = xk[..., 0::2], xk[..., 1::2]
    return (
        torch.cat((q1 * cos - q2 * sin, q2 * cos + q1 * sin), dim=-1),
        torch.cat((k1 * cos - k2 * sin, k2 * cos + k1 * sin), dim=-1),
    )


class Attention(nn.Module):
    """Multi-head latent attention: keys and values expand from one low-rank latent.

    Queries go through a rank-1536 path (q_lora_rank): ``wq_a`` (q_a_proj), the RMSNorm ``q_norm``
    (q_a_layernorm), ``wq_b`` (q_b_proj). ``wkv_a`` (kv_a_proj_with_mqa) projects each token to a
    512-wide latent (kv_lora_rank) and a 64-channel rotary key (qk_rope_head_dim) every head shares;
    the latent, normed by ``kv_norm`` (kv_a_layernorm), expands through ``wkv_b`` (kv_b_proj) to
    each head's 128 key channels without positions (qk_nope_head_dim) and 128 value channels
    (v_head_dim). Each head's query and key are its channels without positions, then the rotated
    ones; scores scale by (qk_nope_head_dim + qk_rope_head_dim) ** -0.5 times mscale ** 2, mscale =
    0.1 * mscale_all_dim * ln(factor) + 1 (YaRN). RoPE turns adjacent channel pairs
    (rope_interleave). ``wo`` is o_proj.
    """

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        self.kv_lora_rank = model_args.kv_lora_rank
        self.qk_nope_head_dim = model_args.qk_nope_head_dim
        self.qk_rope_head_dim = model_args.qk_rope_head_dim
        self.qk_head_dim = model_args.qk_nope_head_dim + model_args.qk_rope_head_dim
        self.v_head_dim = model_args.v_head_dim
        # YaRN (rope_scaling.mscale_all_dim): scores scale by the square of
        # 0.1 * mscale_all_dim * ln(factor) + 1 as well.
        mscale = 0.1 * model_args.rope_mscale_all_dim * math.log(model_args.rope_factor) + 1.0
        self.scale = self.qk_head_dim**-0.5 * mscale * mscale
        # q_a_proj, q_a_layernorm, q_b_proj
        self.wq_a = nn.Linear(model_args.dim, model_args.q_lora_rank, bias=False)
        self.q_norm = nn.RMSNorm(model_args.q_lora_rank, eps=1e-06)
        self.wq_b = nn.Linear(
            model_args.q_lora_rank, model_args.n_heads * self.qk_head_dim, bias=False
        )
        # kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj
        self.wkv_a = nn.Linear(
            model_args.dim, self.kv_lora_rank + self.qk_rope_head_dim, bias=False
        )
        self.kv_norm = nn.RMSNorm(self.kv_lora_rank, eps=1e-06)
        self.wkv_b = nn.Linear(
            self.kv_lora_rank,
            model_args.n_heads * (self.qk_nope_head_dim + self.v_head_dim),
            bias=False,
        )
        # o_proj
        self.wo = nn.Linear(model_args.n_heads * self.v_head_dim, model_args.dim, bias=False)

    def init_weights(self, init_std: float) -> None:
        for linear in (self.wq_a, self.wq_b, self.wkv_a, self.wkv_b, self.wo):
            nn.init.normal_(linear.weight, mean=0.0, std=init_std)
        for norm in (self.q_norm, self.kv_norm):
            norm.reset_parameters()

    def forward(self, x: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
        bs, seqlen, _ = x.shape
        # -1 heads: under tensor parallelism each rank holds a slice of the heads.
        q = (
            self.wq_b(self.q_norm(self.wq_a(x)))
            .view(bs, seqlen, -1, self.qk_head_dim)
            .transpose(1, 2)
        )
        q_nope, q_rope = q.split([self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
        # The latent and one rotary key that every head shares.
        kv, k_rope = self.wkv_a(x).split([self.kv_lora_rank, self.qk_rope_head_dim], dim=-1)
        k_rope = k_rope.view(bs, 1, seqlen, self.qk_rope_head_dim)
        q_rope, k_rope = apply_rotary_emb(q_rope, k_rope, rope_cache)
        kv = self.wkv_b(self.kv_norm(kv))
        kv = kv.view(bs, seqlen, -1, self.qk_nope_head_dim + self.v_head_dim).transpose(1, 2)
        k_nope, xv = kv.split([self.qk_nope_head_dim, self.v_head_dim], dim=-1)
        xq = torch.cat((q_nope, q_rope), dim=-1)
        xk = torch.cat((k_nope, k_rope.expand(-1, k_nope.shape[1], -1, -1)), dim=-1)
        output = F.scaled_dot_product_attention(xq, xk, xv, is_causal=True, scale=self.scale)
        output = output.transpose(1, 2).reshape(bs, seqlen, -1)
        return self.wo(output)


class FeedForward(nn.Module):
    """SwiGLU MLP: ``w2(silu(w1(x)) * w3(x))`` (gate_proj, up_proj, down_proj in transformers)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def init_weights(self, init_std: float) -> None:
        for linear in (self.w1, self.w2, self.w3):
            nn.init.normal_(linear.weight, mean=0.0, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h = x + attention(norm(x))``, then ``h + mlp(norm(h))``."""

    def __init__(self, layer_id: int, model_args: ModelArgs) -> None:
        super().__init__()
        self.attention_norm = nn.RMSNorm(model_args.dim, eps=model_args.norm_eps)
        self.attention = Attention(model_args)
        self.ffn_norm = nn.RMSNorm(model_args.dim, eps=model_args.norm_eps)
        # first_k_dense_replace: experts here, or a dense MLP.
        self.moe_enabled = model_args.is_moe_layer(layer_id)
        if self.moe_enabled:
            self.moe = MoE(model_args)
        else:
            self.feed_forward = FeedForward(model_args.dim, model_args.ffn_dim)

    def init_weights(self, init_std: float) -> None:
        self.attention_norm.reset_parameters()
        self.attention.init_weights(init_std)
        self.ffn_norm.reset_parameters()
        (self.moe if self.moe_enabled else self.feed_forward).init_weights(init_std)

    def forward(self, x: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope_cache)
        mlp = self.moe if self.moe_enabled else self.feed_forward
        return h + mlp(self.ffn_norm(h))


class Transformer(nn.Module):
    """Token embeddings, 61 blocks (num_hidden_layers), final RMSNorm, output projection.

    Pipeline stages set ``tok_embeddings``, ``norm`` or ``output`` to None and keep a subset of
    ``layers``; ``forward`` skips what a stage does not own.
    """

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        self.model_args = model_args
        self.tok_embeddings = nn.Embedding(model_args.vocab_size, model_args.dim)
        self.register_buffer(
            "rope_cache",
            precompute_rope_cache(model_args, model_args.max_seq_len),
            persistent=False,
        )
        self.layers = nn.ModuleDict(
            {
                str(layer_id): TransformerBlock(layer_id, model_args)
                for layer_id in range(model_args.n_layers)
            }
        )
        self.norm = nn.RMSNorm(model_args.dim, eps=model_args.norm_eps)
        self.output = nn.Linear(model_args.dim, model_args.vocab_size, bias=False)
        # Set by a trainer that applies the output projection inside its loss: forward then
        # returns the final hidden states.
        self.skip_output = False

    def init_weights(self, buffer_device: torch.device | None = None) -> None:
        """Initialize like transformers: normal(0, initializer_range) weights, unit norms.

        ``buffer_device`` is where the rope cache is recomputed (after ``to_empty``).
        """
        buffer_device = buffer_device or self.rope_cache.device
        self.rope_cache = precompute_rope_cache(
            self.model_args, self.model_args.max_seq_len, device=buffer_device
        )
        init_std = self.model_args.initializer_range
        if self.tok_embeddings is not None:
            nn.init.normal_(self.tok_embeddings.weight, mean=0.0, std=init_std)
        for layer in self.layers.values():
            layer.init_weights(init_std)
        if self.norm is not None:
            self.norm.reset_parameters()
        if self.output is not None:
            nn.init.normal_(self.output.weight, mean=0.0, std=init_std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``[batch, seq]`` (or hidden states on a later pipeline stage) to logits."""
        h = self.tok_embeddings(tokens) if self.tok_embeddings is not None else tokens
        for layer in self.layers.values():
            h = layer(h, self.rope_cache)
        h = self.norm(h) if self.norm is not None else h
        if self.output is None or self.skip_output:
            return h
        return self.output(h)

    def load_balancing_loss(self) -> torch.Tensor:
        """The load-balancing loss of the last training forward over this model's MoE layers.

        See :func:`~.moe.load_balancing_loss`; the trainer weighs it by router_aux_loss_coef.
        """
        return load_balancing_loss(
            [layer.moe for layer in self.layers.values() if layer.moe_enabled]
        )
