"""gpt_oss_20b as plain, single-device PyTorch.

Architecture (GptOssForCausalLM): 24 pre-norm blocks. Norms: RMSNorm. MLP: experts with biases and a
clamped SwiGLU. Positions: yarn RoPE.

Attention: 64 query heads sharing 8 key/value heads, head_dim 64. Attention linear layers have
biases. One layer in 2 (the last) attends to the whole prefix, the others through a sliding window
of 128 tokens (layer_types). Each attention head has a learned sink logit (sinks) in its softmax.

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

    The ramp's bounds are not rounded (rope_scaling.truncate is false).
    """
    dim = args.head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
    pos_freqs = args.rope_theta**exponents
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (args.rope_factor * pos_freqs)

    def correction_dim(rotations: float) -> float:
        """The dimension whose frequency turns ``rotations`` times over the original length."""
        turns = args.rope_original_max_seq_len / (rotations * 2 * math.pi)
        return dim * math.log(turns) / (2 * math.log(args.rope_theta))

    low = max(correction_dim(args.rope_beta_fast), 0)
    high = min(correction_dim(args.rope_beta_slow), dim - 1)
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

    Returns ``[seq_len, 2 * head_dim]``: cos in the first half, sin in the second. Angles use
    transformers' half-split layout (the frequencies repeated twice, not interleaved), so the
    checkpoint's q/k projections load without any permutation. YaRN scales cos and sin
    by rope_scaling.attention_factor.
    """
    inv_freq = rope_inv_freq(args, device)
    positions = torch.arange(seq_len, dtype=torch.float, device=device)
    freqs = torch.outer(positions, inv_freq)
    angles = torch.cat((freqs, freqs), dim=-1)
    return torch.cat((angles.cos(), angles.sin()), dim=-1) * args.rope_attention_factor


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
    """Causal self-attention with attention sinks and rotary positions.

    64 query heads (num_attention_heads) share 8 key/value heads (num_key_value_heads). Sliding
    layers (``sliding``) attend through a window of ``sliding_window`` tokens; every
    sliding_window_pattern-th layer attends to the whole prefix. Each head has a learned sink logit
    (``sinks``) joined to its softmax: it takes a share of the probability and adds no value.
    scaled_dot_product_attention cannot take it, so scores are computed explicitly: the matmul, the
    mask, a float32 softmax over the scores and the sink's column, then that column dropped (memory
    grows with seqlen squared; flash kernels with sink support are the efficient path on GPUs).
    """

    def __init__(self, model_args: ModelArgs, sliding: bool) -> None:
        super().__init__()
        self.sliding_window = model_args.sliding_window if sliding else None
        self.head_dim = model_args.head_dim
        self.n_rep = model_args.n_heads // model_args.n_kv_heads
        # One learned logit per query head, joined to the softmax (sinks in transformers).
        self.sinks = nn.Parameter(torch.empty(model_args.n_heads))
        q_dim = model_args.n_heads * model_args.head_dim
        kv_dim = model_args.n_kv_heads * model_args.head_dim
        self.wq = nn.Linear(model_args.dim, q_dim, bias=True)
        self.wk = nn.Linear(model_args.dim, kv_dim, bias=True)
        self.wv = nn.Linear(model_args.dim, kv_dim, bias=True)
        self.wo = nn.Linear(q_dim, model_args.dim, bias=True)

    def init_weights(self, init_std: float) -> None:
        for linear in (self.wq, self.wk, self.wv, self.wo):
            nn.init.normal_(linear.weight, mean=0.0, std=init_std)
            nn.init.zeros_(linear.bias)
        nn.init.normal_(self.sinks, mean=0.0, std=init_std)

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
        scores = torch.matmul(xq, xk.transpose(2, 3)) * self.head_dim**-0.5
        if self.sliding_window is None:
            mask = torch.ones(seqlen, seqlen, dtype=torch.bool, device=x.device).tril()
        else:
            mask = sliding_window_mask(seqlen, self.sliding_window, x.device)
        scores = scores.masked_fill(~mask, float("-inf"))
        # Under tensor parallelism ``sinks`` is a DTensor split by head: this rank's heads.
        sinks = self.sinks.to_local() if hasattr(self.sinks, "to_local") else self.sinks
        sink_column = sinks.view(1, -1, 1, 1).expand(bs, -1, seqlen, 1).to(scores.dtype)
        # The sink takes its share of each softmax and has no value: drop its column after.
        probs = F.softmax(torch.cat((scores, sink_column), dim=-1), dim=-1, dtype=torch.float32)
        probs = probs[..., :-1].to(xq.dtype)
        output = torch.matmul(probs, xv)
        output = output.transpose(1, 2).reshape(bs, seqlen, -1)
        return self.wo(output)


def is_sliding_layer(model_args: ModelArgs, layer_id: int) -> bool:
    """Whether a layer attends through the sliding window (layer_types "sliding_attention").

    Every sliding_window_pattern-th layer (counting from 1) attends to the whole prefix.
    """
    return (layer_id + 1) % model_args.sliding_window_pattern != 0


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h = x + attention(norm(x))``, then ``h + moe(norm(h))``."""

    def __init__(self, layer_id: int, model_args: ModelArgs) -> None:
        super().__init__()
        self.attention_norm = nn.RMSNorm(model_args.dim, eps=model_args.norm_eps)
        self.attention = Attention(model_args, sliding=is_sliding_layer(model_args, layer_id))
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
    """Token embeddings, 24 blocks (num_hidden_layers), final RMSNorm, output projection.

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
