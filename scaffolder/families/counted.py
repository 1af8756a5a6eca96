"""Parameter counts for families whose blocks differ from Llama's (ArchSpec.num_params' formula).

The recipe adds up its block from the helpers below; the generated tests check the total against
transformers' model on the meta device.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaffolder.spec import ArchSpec


@dataclass(frozen=True)
class CountedSpec(ArchSpec):
    """An ArchSpec whose recipe states the parameter counts."""

    block_params: int = 0  # one transformer block
    other_params: int = 0  # embeddings (and positions), final norm, untied output projection

    def num_params(self) -> int:
        """Parameter count of the full model (matches transformers' count)."""
        return self.n_layers * self.block_params + self.other_params

    def layer_params(self) -> int:
        """Parameters in one transformer block."""
        return self.block_params


def attention_params(
    dim: int, n_heads: int, n_kv_heads: int, head_dim: int, *, qkv_bias: bool, out_bias: bool
) -> int:
    """q, k, v and output projections."""
    qkv = dim * head_dim * (n_heads + 2 * n_kv_heads)
    out = n_heads * head_dim * dim
    if qkv_bias:
        qkv += head_dim * (n_heads + 2 * n_kv_heads)
    if out_bias:
        out += dim
    return qkv + out


def mlp_params(dim: int, ffn_dim: int, *, gated: bool, bias: bool) -> int:
    """Gated (gate, up, down) or plain (up, down) MLP."""
    params = (3 if gated else 2) * dim * ffn_dim
    if bias:
        params += (2 if gated else 1) * ffn_dim + dim
    return params
