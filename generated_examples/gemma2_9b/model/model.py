"""gemma2_9b as plain, single-device PyTorch.

Architecture (Gemma2ForCausalLM): 42 blocks that norm each sublayer's input and output. Norms:
RMSNorm scaling by ``1 + weight``, in float32. MLP: GeGLU with the tanh GELU. Positions: default
RoPE.

Attention: 16 query heads sharing 8 key/value heads, head_dim 256. Scores scale by
``query_pre_attn_scalar ** -0.5`` rather than ``head_dim ** -0.5``. One layer in 2 (the last)
attends to the whole prefix, the others through a sliding window of 4096 tokens (layer_types). The
attention scores are soft-capped at 50.0 (attn_logit_softcapping).

Embeddings are scaled by sqrt(hidden_size). The output logits are soft-capped at 30.0
(final_logit_softcapping). Input and output embeddings are tied (tie_word_embeddings).

Parallelism is applied from ``infra/``; nothing here knows about it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .args import ModelArgs


class RMSNorm(nn.Module):
    """RMSNorm that scales by ``1 + weight`` (weights start at zero), computed in float32.

    As transformers' Gemma2RMSNorm: normalize and scale in float32, then
    cast back to the input dtype, so bf16 activations are not rounded between the two steps.
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * (1.0 + self.weight.float())).type_as(x)


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


def sliding_window_mask(seq_len: int, window: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[seq_len, seq_len]`` mask, True where query ``i`` may attend to key ``j``.

    Causal and windowed, ``i - window < j <= i``, as transformers masks a sliding_window layer.
    """
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril_().triu_(1 - window)


class Attention(nn.Module):
    """Causal self-attention with soft-capped scores and rotary positions.

    16 query heads (num_attention_heads) share 8 key/value heads (num_key_value_heads). Sliding
    layers (``sliding``) attend through a window of ``sliding_window`` tokens; every
    sliding_window_pattern-th layer attends to the whole prefix. Scores scale by
    ``query_pre_attn_scalar ** -0.5`` rather than ``head_dim ** -0.5``. Scores are squashed into
    (-cap, cap) as ``cap * tanh(scores / cap)`` (attn_logit_softcapping) before the mask and the
    float32 softmax; scaled_dot_product_attention has no such step, so they are computed explicitly.
    """

    def __init__(self, model_args: ModelArgs, sliding: bool) -> None:
        super().__init__()
        self.sliding_window = model_args.sliding_window if sliding else None
        self.head_dim = model_args.head_dim
        self.n_rep = model_args.n_heads // model_args.n_kv_heads
        self.scale = model_args.query_pre_attn_scalar**-0.5
        self.softcap = model_args.attn_logit_softcapping
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
        # Each key/value head serves n_rep consecutive query heads.
        xk = xk.repeat_interleave(self.n_rep, dim=1)
        xv = xv.repeat_interleave(self.n_rep, dim=1)
        scores = torch.matmul(xq, xk.transpose(2, 3)) * self.scale
        scores = torch.tanh(scores / self.softcap) * self.softcap
        if self.sliding_window is None:
            mask = torch.ones(seqlen, seqlen, dtype=torch.bool, device=x.device).tril()
        else:
            mask = sliding_window_mask(seqlen, self.sliding_window, x.device)
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(xq.dtype)
        output = torch.matmul(probs, xv)
        output = output.transpose(1, 2).reshape(bs, seqlen, -1)
        return self.wo(output)


class FeedForward(nn.Module):
    """GeGLU MLP: ``w2(gelu(w1(x)) * w3(x))`` (gate_proj, up_proj, down_proj in transformers).

    The GELU is the tanh approximation (hidden_activation gelu_pytorch_tanh), as torch computes it.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def init_weights(self, init_std: float) -> None:
        for linear in (self.w1, self.w2, self.w3):
            nn.init.normal_(linear.weight, mean=0.0, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.gelu(self.w1(x), approximate="tanh") * self.w3(x))


def is_sliding_layer(model_args: ModelArgs, layer_id: int) -> bool:
    """Whether a layer attends through the sliding window (layer_types "sliding_attention").

    Every sliding_window_pattern-th layer (counting from 1) attends to the whole prefix.
    """
    return (layer_id + 1) % model_args.sliding_window_pattern != 0


class TransformerBlock(nn.Module):
    """Block that norms each sublayer's input and its output before the residual add.

    ``h = x + post_attention_norm(attention(attention_norm(x)))``, then
    ``h + post_ffn_norm(feed_forward(ffn_norm(h)))`` (transformers: input_layernorm,
    post_attention_layernorm, pre_feedforward_layernorm, post_feedforward_layernorm).
    """

    def __init__(self, layer_id: int, model_args: ModelArgs) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(model_args.dim, eps=model_args.norm_eps)
        self.attention = Attention(model_args, sliding=is_sliding_layer(model_args, layer_id))
        self.post_attention_norm = RMSNorm(model_args.dim, eps=model_args.norm_eps)
        self.ffn_norm = RMSNorm(model_args.dim, eps=model_args.norm_eps)
        self.feed_forward = FeedForward(model_args.dim, model_args.ffn_dim)
        self.post_ffn_norm = RMSNorm(model_args.dim, eps=model_args.norm_eps)

    def init_weights(self, init_std: float) -> None:
        self.attention_norm.reset_parameters()
        self.attention.init_weights(init_std)
        self.post_attention_norm.reset_parameters()
        self.ffn_norm.reset_parameters()
        self.feed_forward.init_weights(init_std)
        self.post_ffn_norm.reset_parameters()

    def forward(self, x: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
        h = x + self.post_attention_norm(self.attention(self.attention_norm(x), rope_cache))
        return h + self.post_ffn_norm(self.feed_forward(self.ffn_norm(h)))


class Transformer(nn.Module):
    """Token embeddings, 42 blocks (num_hidden_layers), final RMSNorm, output projection.

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
            {
                str(layer_id): TransformerBlock(layer_id, model_args)
                for layer_id in range(model_args.n_layers)
            }
        )
        self.norm = RMSNorm(model_args.dim, eps=model_args.norm_eps)
        self.output = nn.Linear(model_args.dim, model_args.vocab_size, bias=False)
        # tie_word_embeddings: the output projection reuses the embedding table.
        self.output.weight = self.tok_embeddings.weight
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
        if self.tok_embeddings is not None and self.output is not None:
            # to_empty() materializes shared parameters separately: tie them again.
            self.output.weight = self.tok_embeddings.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``[batch, seq]`` (or hidden states on a later pipeline stage) to logits."""
        if self.tok_embeddings is not None:
            h = self.tok_embeddings(tokens)
            # Embeddings are scaled by sqrt(hidden_size), the factor rounded to their dtype first.
            h = h * torch.tensor(self.model_args.dim**0.5, dtype=h.dtype)
        else:
            h = tokens
        for layer in self.layers.values():
            h = layer(h, self.rope_cache)
        h = self.norm(h) if self.norm is not None else h
        if self.output is None or self.skip_output:
            return h
        return self.output_transform(self.output(h))

    def output_transform(self, logits: torch.Tensor) -> torch.Tensor:
        """final_logit_softcapping: the output projection's logits squashed into (-cap, cap)."""
        cap = self.model_args.final_logit_softcapping
        return torch.tanh(logits / cap) * cap
