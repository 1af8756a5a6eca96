"""mixtral_8x7b as plain, single-device PyTorch.

Architecture (MixtralForCausalLM): 32 pre-norm blocks. Norms: RMSNorm. MLP: SwiGLU. Positions:
default RoPE.

Attention: 32 query heads sharing 8 key/value heads, head_dim 128.

Input and output embeddings are untied.

Parallelism is applied from ``infra/``; nothing here knows about it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .args import ModelArgs
from .moe import MoE, load_balancing_loss


def rope_inv_freq(args: ModelArgs, device: torch.device | None) -> torch.Tensor:
    """Inverse frequencies of plain RoPE with base ``rope_theta``."""
    exponents = torch.arange(0, args.head_dim, 2, dtype=torch.float, device=device) / args.head_dim
    return 1.0 / (args.rope_theta**exponents)


def precompute_rope_cache(
    args: ModelArgs, seq_len: int, device: torch.device | None = None
) -> torch.Tensor:
    """cos and sin of the rotary angles for positions ``0 .. seq_len - 1``.

    Returns ``[seq_len, 2 * head_dim]``: cos in the first half, sin in the second. Angles use
    transformers' half-split layout (the frequencies repeated twice, not interleaved), so the
    checkpoint's q/k projections load without any permutation.
    """
    inv_freq = rope_inv_freq(args, device)
    positions = torch.arange(seq_len, dtype=torch.float, device=device)
    freqs = torch.outer(positions, inv_freq)
    angles = torch.cat((freqs, freqs), dim=-1)
    return torch.cat((angles.cos(), angles.sin()), dim=-1)


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


class Attention(nn.Module):
    """Causal self-attention with grouped-query attention and rotary positions.

    32 query heads (num_attention_heads) share 8 key/value heads (num_key_value_heads);
    scaled_dot_product_attention broadcasts the key/value heads itself.
    """

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        self.head_dim = model_args.head_dim
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
        xq, xk = apply_rotary_emb(xq, xk, rope_cache)
        output = F.scaled_dot_product_attention(xq, xk, xv, is_causal=True, enable_gqa=True)
        output = output.transpose(1, 2).reshape(bs, seqlen, -1)
        return self.wo(output)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h = x + attention(norm(x))``, then ``h + moe(norm(h))``."""

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        self.attention_norm = nn.RMSNorm(model_args.dim, eps=model_args.norm_eps)
        self.attention = Attention(model_args)
        self.ffn_norm = nn.RMSNorm(model_args.dim, eps=model_args.norm_eps)
        self.moe = MoE(model_args)

    def init_weights(self, init_std: float) -> None:
        self.attention_norm.reset_parameters()
        self.attention.init_weights(init_std)
        self.ffn_norm.reset_parameters()
        self.moe.init_weights(init_std)

    def forward(self, x: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope_cache)
        return h + self.moe(self.ffn_norm(h))


class Transformer(nn.Module):
    """Token embeddings, 32 blocks (num_hidden_layers), final RMSNorm, output projection.

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

    def load_balancing_loss(self) -> torch.Tensor:
        """The load-balancing loss of the last training forward over this model's MoE layers.

        See :func:`~.moe.load_balancing_loss`; the trainer weighs it by router_aux_loss_coef.
        """
        return load_balancing_loss([layer.moe for layer in self.layers.values()])
