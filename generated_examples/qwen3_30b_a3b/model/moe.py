"""The mixture-of-experts MLP of qwen3_30b_a3b.

Router, stacked experts and the token dispatch between them. In every layer, each token goes to 8 of
128 experts (num_experts_per_tok of num_experts), SwiGLU MLPs of 768 hidden units
(moe_intermediate_size).

Expert parallelism (``infra/``) swaps the :class:`TokenDispatcher` for one that exchanges tokens
between ranks; nothing here knows about it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .args import ModelArgs


class Router(nn.Module):
    """Top-k router (``gate`` in transformers).

    Each token goes to the top_k (num_experts_per_tok) of num_experts experts. Scores are a softmax
    over every expert's logit, in float32; the chosen experts' scores are renormalized to sum to one
    (norm_topk_prob).
    """

    def __init__(self, dim: int, num_experts: int, top_k: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.gate = nn.Linear(dim, num_experts, bias=False)

    def init_weights(self, init_std: float) -> None:
        nn.init.normal_(self.gate.weight, mean=0.0, std=init_std)

    def forward(
        self, x: torch.Tensor, expert_bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens ``[tokens, dim]`` to ``(weights, experts, logits)``.

        ``weights`` and ``experts`` are ``[tokens, top_k]`` (float32 weights), ``logits`` the
        router's ``[tokens, num_experts]``. ``expert_bias`` shifts which experts are chosen, never
        the weights (auxiliary-loss-free balancing; all zeros unless the trainer updates it).
        """
        logits = self.gate(x)
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)
        experts = torch.topk(probs + expert_bias, self.top_k, dim=-1).indices
        weights = probs.gather(-1, experts)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights, experts, logits


class GroupedExperts(nn.Module):
    """The experts' SwiGLU weights, stacked by expert.

    ``w1`` and ``w3`` are ``[experts, hidden_dim, dim]``, ``w2`` ``[experts, dim, hidden_dim]``
    (transformers' checkpoints hold one ``experts.<j>.gate_proj``, ``up_proj`` and ``down_proj`` per
    expert).

    ``torch._grouped_mm`` multiplies every expert's rows at once where it applies (see
    :func:`grouped_mm_applies`); otherwise, or with ``use_grouped_mm`` off, a loop over the experts
    computes the same values.
    """

    def __init__(self, dim: int, hidden_dim: int, num_experts: int, use_grouped_mm: bool) -> None:
        super().__init__()
        self.use_grouped_mm = use_grouped_mm
        self.w1 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))
        self.w2 = nn.Parameter(torch.empty(num_experts, dim, hidden_dim))
        self.w3 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))

    def init_weights(self, init_std: float) -> None:
        for weight in (self.w1, self.w2, self.w3):
            nn.init.normal_(weight, mean=0.0, std=init_std)

    def forward(self, x: torch.Tensor, tokens_per_expert: torch.Tensor) -> torch.Tensor:
        """Tokens ``[routed, dim]`` sorted by expert, ``tokens_per_expert[e]`` of them for expert
        ``e`` (of the experts this module holds), to outputs in the same order."""
        # Under expert parallelism the weights are DTensors sharded by expert: compute with this
        # rank's experts, which the token dispatcher sent these tokens to.
        w1, w2, w3 = (
            w.to_local() if hasattr(w, "to_local") else w for w in (self.w1, self.w2, self.w3)
        )
        if self.use_grouped_mm and grouped_mm_applies(x, w1, w2):
            offsets = torch.cumsum(tokens_per_expert, dim=0, dtype=torch.int32)
            h = F.silu(torch._grouped_mm(x, w1.transpose(-2, -1), offs=offsets))
            h = h * torch._grouped_mm(x, w3.transpose(-2, -1), offs=offsets)
            return torch._grouped_mm(h, w2.transpose(-2, -1), offs=offsets)
        # The reference: one expert after the other.
        outputs = []
        for expert, chunk in enumerate(x.split(tokens_per_expert.tolist())):
            h = F.silu(chunk @ w1[expert].t()) * (chunk @ w3[expert].t())
            outputs.append(h @ w2[expert].t())
        return torch.cat(outputs)


def grouped_mm_applies(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> bool:
    """``torch._grouped_mm`` needs rows of 16-byte multiples (dim and hidden_dim); on CPU it
    computes in float32 only."""
    alignment = 16 // x.element_size()
    if x.dim() != 2 or w1.shape[-1] % alignment or w2.shape[-1] % alignment:
        return False
    return x.is_cuda or x.dtype == torch.float32


@dataclass
class Dispatch:
    """What :meth:`TokenDispatcher.combine` needs to undo :meth:`TokenDispatcher.dispatch`."""

    token_ids: torch.Tensor  # [tokens * top_k]: the token of each routed row
    weights: torch.Tensor  # [tokens * top_k]: its router weight


class TokenDispatcher:
    """Sorts routed tokens by expert for :class:`GroupedExperts` and adds the weighted outputs
    back to their tokens (on one rank; expert parallelism replaces it)."""

    def __init__(self, num_experts: int) -> None:
        self.num_experts = num_experts

    def dispatch(
        self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, Dispatch]:
        """Tokens ``[tokens, dim]`` and their ``[tokens, top_k]`` choices to the routed rows
        ``[tokens * top_k, dim]`` sorted by expert, and the rows of each expert."""
        tokens_per_expert = torch.bincount(experts.flatten(), minlength=self.num_experts)
        order = torch.argsort(experts.flatten(), stable=True)
        token_ids = order // experts.shape[1]
        return x[token_ids], tokens_per_expert, Dispatch(token_ids, weights.flatten()[order])

    def combine(self, routed: torch.Tensor, dispatch: Dispatch, out: torch.Tensor) -> torch.Tensor:
        """Add each routed row, times its weight (in float32), to ``out`` at its token."""
        weighted = (routed.float() * dispatch.weights[:, None]).to(routed.dtype)
        return out.index_add(0, dispatch.token_ids, weighted)


class MoE(nn.Module):
    """Mixture of experts (``mlp`` in transformers): route, dispatch, compute, combine.

    Each token's output is the sum of its chosen experts' outputs times their router weights. In
    training it records its routing: ``tokens_per_expert`` (for the expert-bias update and the load
    statistics) and what :func:`load_balancing_loss` needs.
    """

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        num_experts = model_args.num_experts
        self.router = Router(model_args.dim, num_experts, model_args.top_k)
        self.experts = GroupedExperts(
            model_args.dim, model_args.moe_ffn_dim, num_experts, model_args.use_grouped_mm
        )
        self.dispatcher = TokenDispatcher(num_experts)
        # Auxiliary-loss-free balancing: added to the router's scores to choose experts. The
        # trainer updates it from tokens_per_expert before each optimizer step.
        self.register_buffer("expert_bias", torch.zeros(num_experts), persistent=True)
        # Tokens routed to each expert since the trainer last read it (training only).
        self.register_buffer("tokens_per_expert", torch.zeros(num_experts), persistent=False)
        # The last training forward's routing, for load_balancing_loss (None before one).
        self.router_probs_sum: torch.Tensor | None = None
        self.routed_counts: torch.Tensor | None = None
        self.routed_tokens = 0

    def init_weights(self, init_std: float) -> None:
        self.router.init_weights(init_std)
        self.experts.init_weights(init_std)
        self.expert_bias.zero_()
        self.tokens_per_expert.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        weights, experts, logits = self.router(x, self.expert_bias)
        routed, tokens_per_expert, dispatch = self.dispatcher.dispatch(x, weights, experts)
        out = self.dispatcher.combine(
            self.experts(routed, tokens_per_expert), dispatch, torch.zeros_like(x)
        )
        if self.training:
            self.record_routing(logits, experts)
        return out.reshape(shape)

    def record_routing(self, logits: torch.Tensor, experts: torch.Tensor) -> None:
        """Keep this forward's routing for the load-balancing loss and the expert-bias update."""
        counts = torch.bincount(experts.flatten(), minlength=self.expert_bias.numel()).float()
        with torch.no_grad():
            self.tokens_per_expert += counts
        self.routed_counts = counts
        self.router_probs_sum = F.softmax(logits, dim=-1, dtype=torch.float32).sum(dim=0)
        self.routed_tokens = logits.shape[0]


def load_balancing_loss(layers: list[MoE]) -> torch.Tensor:
    """transformers' load-balancing loss over ``layers``' last training forward.

    As transformers' load_balancing_loss_func: the fraction of routed rows per expert and the mean
    router probability per expert, both over all the layers' tokens together, multiplied and summed,
    times the number of experts (one for perfectly even routing). The trainer adds it times
    router_aux_loss_coef (0.001) to the loss.
    """
    counts = torch.stack([moe.routed_counts for moe in layers]).sum(dim=0)
    probs = torch.stack([moe.router_probs_sum for moe in layers]).sum(dim=0)
    rows = sum(moe.routed_tokens for moe in layers)
    return counts.numel() * torch.sum((counts / rows) * (probs / rows))
