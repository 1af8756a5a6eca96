"""gpt2 as plain, single-device PyTorch.

Architecture (GPT2LMHeadModel): 12 pre-norm blocks. Norms: LayerNorm with weight and bias. MLP:
c_fc, c_proj with a GELU (gelu_new) between them, no gate. Positions: learned absolute embeddings
for up to 1024 positions; no RoPE.

Attention: 12 heads, head_dim 64. Attention and MLP linear layers have biases.

Input and output embeddings are tied (tie_word_embeddings). The checkpoint has module names of its
own and fuses q/k/v; ``state_dict_adapter.py`` maps it onto this model's separate projections.

Parallelism is applied from ``infra/``; nothing here knows about it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .args import ModelArgs


class Attention(nn.Module):
    """Causal multi-head self-attention with learned position embeddings."""

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        self.head_dim = model_args.head_dim
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bs, seqlen, _ = x.shape
        # -1 heads: under tensor parallelism each rank holds a slice of the heads.
        xq = self.wq(x).view(bs, seqlen, -1, self.head_dim).transpose(1, 2)
        xk = self.wk(x).view(bs, seqlen, -1, self.head_dim).transpose(1, 2)
        xv = self.wv(x).view(bs, seqlen, -1, self.head_dim).transpose(1, 2)
        output = F.scaled_dot_product_attention(xq, xk, xv, is_causal=True)
        output = output.transpose(1, 2).reshape(bs, seqlen, -1)
        return self.wo(output)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation, written out as transformers' gelu_new computes it."""
    return (
        0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    )


class FeedForward(nn.Module):
    """MLP ``w2(gelu(w1(x)))``, no gate (c_fc, c_proj in transformers).

    The GELU is the tanh approximation (activation_function gelu_new), in transformers' operation
    order: torch's fused tanh GELU rounds differently.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=True)
        self.w2 = nn.Linear(hidden_dim, dim, bias=True)

    def init_weights(self, init_std: float) -> None:
        for linear in (self.w1, self.w2):
            nn.init.normal_(linear.weight, mean=0.0, std=init_std)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(gelu_new(self.w1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h = x + attention(norm(x))``, then ``h + feed_forward(norm(h))``."""

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(model_args.dim, eps=model_args.norm_eps)
        self.attention = Attention(model_args)
        self.ffn_norm = nn.LayerNorm(model_args.dim, eps=model_args.norm_eps)
        self.feed_forward = FeedForward(model_args.dim, model_args.ffn_dim)

    def init_weights(self, init_std: float) -> None:
        self.attention_norm.reset_parameters()
        self.attention.init_weights(init_std)
        self.ffn_norm.reset_parameters()
        self.feed_forward.init_weights(init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x))
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """Token and position embeddings, 12 blocks, final LayerNorm, output projection.

    Positions are learned: ``pos_embeddings`` holds one row per position up to
    ``max_seq_len`` (n_positions), added to the token embeddings. Pipeline stages set
    ``tok_embeddings`` and ``pos_embeddings``, ``norm`` or ``output`` to None and keep a subset of
    ``layers``; ``forward`` skips what a stage does not own.
    """

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        self.model_args = model_args
        self.tok_embeddings = nn.Embedding(model_args.vocab_size, model_args.dim)
        self.pos_embeddings = nn.Embedding(model_args.max_seq_len, model_args.dim)
        self.layers = nn.ModuleDict(
            {str(layer_id): TransformerBlock(model_args) for layer_id in range(model_args.n_layers)}
        )
        self.norm = nn.LayerNorm(model_args.dim, eps=model_args.norm_eps)
        self.output = nn.Linear(model_args.dim, model_args.vocab_size, bias=False)
        # tie_word_embeddings: the output projection reuses the embedding table.
        self.output.weight = self.tok_embeddings.weight
        # Set by a trainer that applies the output projection inside its loss: forward then
        # returns the final hidden states.
        self.skip_output = False

    def init_weights(self, buffer_device: torch.device | None = None) -> None:
        """Initialize like transformers: normal(0, initializer_range) weights, unit norms, and
        the residual output projections (wo, w2) scaled down by sqrt(2 * n_layer).

        ``buffer_device`` is unused: the model has no buffers (positions are parameters).
        """
        init_std = self.model_args.initializer_range
        residual_std = init_std / (2 * self.model_args.n_layers) ** 0.5
        if self.tok_embeddings is not None:
            nn.init.normal_(self.tok_embeddings.weight, mean=0.0, std=init_std)
        if self.pos_embeddings is not None:
            nn.init.normal_(self.pos_embeddings.weight, mean=0.0, std=init_std)
        for layer in self.layers.values():
            layer.init_weights(init_std)
            nn.init.normal_(layer.attention.wo.weight, mean=0.0, std=residual_std)
            nn.init.normal_(layer.feed_forward.w2.weight, mean=0.0, std=residual_std)
        if self.norm is not None:
            self.norm.reset_parameters()
        if self.tok_embeddings is not None and self.output is not None:
            # to_empty() materializes shared parameters separately: tie them again.
            self.output.weight = self.tok_embeddings.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``[batch, seq]`` (or hidden states on a later pipeline stage) to logits."""
        if self.tok_embeddings is not None:
            positions = torch.arange(tokens.shape[1], device=tokens.device)
            h = self.tok_embeddings(tokens) + self.pos_embeddings(positions)
        else:
            h = tokens
        for layer in self.layers.values():
            h = layer(h)
        h = self.norm(h) if self.norm is not None else h
        if self.output is None or self.skip_output:
            return h
        return self.output(h)
