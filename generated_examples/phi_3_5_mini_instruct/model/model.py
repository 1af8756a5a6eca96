"""phi_3_5_mini_instruct as plain, single-device PyTorch.

Architecture (Phi3ForCausalLM): 32 pre-norm blocks. Norms: RMSNorm. MLP: SwiGLU. Positions: longrope
RoPE.

Attention: 32 heads, head_dim 96. Every layer attends through a sliding window of 262144 tokens
(sliding_window).

Input and output embeddings are untied. The checkpoint fuses q/k/v and gate/up;
``state_dict_adapter.py`` splits them into this model's separate projections.

Parallelism is applied from ``infra/``; nothing here knows about it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .args import ModelArgs


def rope_inv_freq(
    args: ModelArgs, factors: tuple[float, ...], device: torch.device | None
) -> torch.Tensor:
    """Inverse frequencies of LongRoPE: plain RoPE's, each divided by its own factor.

    ``factors`` is rope_scaling.short_factor or rope_scaling.long_factor, one per frequency.
    """
    exponents = (
        torch.arange(0, args.head_dim, 2, dtype=torch.int64, device=device).float() / args.head_dim
    )
    scale = torch.tensor(factors, dtype=torch.float32, device=device)
    return 1.0 / (scale * args.rope_theta**exponents)


def rope_angles_cache(
    args: ModelArgs, factors: tuple[float, ...], seq_len: int, device: torch.device | None
) -> torch.Tensor:
    """cos and sin of LongRoPE's angles with ``factors`` for positions ``0 .. seq_len - 1``,
    scaled by rope_scaling.attention_factor."""
    inv_freq = rope_inv_freq(args, factors, device)
    positions = torch.arange(seq_len, dtype=torch.float, device=device)
    freqs = torch.outer(positions, inv_freq)
    angles = torch.cat((freqs, freqs), dim=-1)
    return torch.cat((angles.cos(), angles.sin()), dim=-1) * args.rope_attention_factor


def precompute_rope_cache(
    args: ModelArgs, seq_len: int, device: torch.device | None = None
) -> torch.Tensor:
    """cos and sin of the rotary angles: the short factors' rows, then the long factors'.

    Returns ``[original_max_position_embeddings + seq_len, 2 * rotary channels]``: rows
    ``0 .. original_max_position_embeddings - 1`` rotate with short_factor, the ``seq_len`` rows
    after them with long_factor (see :func:`longrope_cache`). cos in the first half of each row,
    sin in the second, in transformers' half-split layout.
    """
    short = rope_angles_cache(args, args.rope_short_factor, args.rope_original_max_seq_len, device)
    return torch.cat((short, rope_angles_cache(args, args.rope_long_factor, seq_len, device)))


def longrope_cache(
    rope_cache: torch.Tensor, seq_len: int, original_max_seq_len: int
) -> torch.Tensor:
    """The rows of :func:`precompute_rope_cache` a sequence of ``seq_len`` tokens uses.

    As transformers does, a sequence longer than original_max_position_embeddings rotates every
    position with the long factors, a shorter one with the short factors.
    """
    if seq_len > original_max_seq_len:
        return rope_cache[original_max_seq_len:]
    return rope_cache[:original_max_seq_len]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of the last dimension: ``(x1, x2) -> (-x2, x1)``."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_emb(
    xq: torch.Tensor, xk: torch.Tensor, rope_cache: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys ``[batch, heads, seq, head_dim]`` by their positions' angles.

    ``rope_cache`` may hold more positions than ``seq``: the first ``seq`` are used. Under tensor
    parallelism the blocks see sequence shards and only attention sees the whole sequence.
    """
    cos, sin = rope_cache[: xq.shape[2]].chunk(2, dim=-1)
    return xq * cos + rotate_half(xq) * sin, xk * cos + rotate_half(xk) * sin


def sliding_window_mask(seq_len: int, window: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[seq_len, seq_len]`` mask, True where query ``i`` may attend to key ``j``.

    Causal and windowed, ``i - window < j <= i``, as transformers masks a sliding_window layer.
    """
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril_().triu_(1 - window)


class Attention(nn.Module):
    """Causal multi-head self-attention with rotary positions.

    Every layer attends through a sliding window of ``sliding_window`` tokens.
    """

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        self.sliding_window = model_args.sliding_window
        self.head_dim = model_args.head_dim
        # LongRoPE's factors switch at this sequence length (original_max_position_embeddings).
        self.original_max_seq_len = model_args.rope_original_max_seq_len
        q_dim = model_args.n_heads * model_args.head_dim
        kv_dim = model_args.n_kv_heads * model_args.head_dim
        self.wq = nn.Linear(model_args.dim, q_dim, bias=False)
        self.wk = nn.Linear(model_args.dim, kv_dim, bias=False)
        self.wv = nn.Linear(model_args.dim, kv_dim, bias=False)
        self.wo = nn.Linear(q_dim, model_args.dim, bias=False)

    def init_weights(self, init_std: float) -> None:
        for linear in (self.wq, self.wk, self.wv, self.wo):
            nn.init.normal_(linear.weight, mean=0.0, std=init_std)

    def forward(self, x: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
        bs, seqlen, _ = x.shape
        # -1 heads: under tensor parallelism each rank holds a slice of the heads.
        xq = self.wq(x).view(bs, seqlen, -1, self.head_dim).transpose(1, 2)
        xk = self.wk(x).view(bs, seqlen, -1, self.head_dim).transpose(1, 2)
        xv = self.wv(x).view(bs, seqlen, -1, self.head_dim).transpose(1, 2)
        rope_cache = longrope_cache(rope_cache, seqlen, self.original_max_seq_len)
        xq, xk = apply_rotary_emb(xq, xk, rope_cache)
        mask = sliding_window_mask(seqlen, self.sliding_window, x.device)
        output = F.scaled_dot_product_attention(xq, xk, xv, attn_mask=mask)
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
    """Pre-norm block: ``h = x + attention(norm(x))``, then ``h + feed_forward(norm(h))``."""

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        self.attention_norm = nn.RMSNorm(model_args.dim, eps=model_args.norm_eps)
        self.attention = Attention(model_args)
        self.ffn_norm = nn.RMSNorm(model_args.dim, eps=model_args.norm_eps)
        self.feed_forward = FeedForward(model_args.dim, model_args.ffn_dim)

    def init_weights(self, init_std: float) -> None:
        self.attention_norm.reset_parameters()
        self.attention.init_weights(init_std)
        self.ffn_norm.reset_parameters()
        self.feed_forward.init_weights(init_std)

    def forward(self, x: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope_cache)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """Token embeddings, 32 blocks (num_hidden_layers), final RMSNorm, output projection.

    Pipeline stages set ``tok_embeddings``, ``norm`` or ``output`` to None and keep a subset of
    ``layers``; ``forward`` skips what a stage does not own.
    """

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        self.model_args = model_args
        # The pad_token_id row gets no gradient (transformers' padding_idx).
        self.tok_embeddings = nn.Embedding(
            model_args.vocab_size, model_args.dim, padding_idx=model_args.pad_token_id
        )
        self.register_buffer(
            "rope_cache",
            precompute_rope_cache(model_args, model_args.max_seq_len),
            persistent=False,
        )
        self.layers = nn.ModuleDict(
            {str(layer_id): TransformerBlock(model_args) for layer_id in range(model_args.n_layers)}
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
