"""The mixture-of-experts MLP of gpt_oss_20b.

Router, stacked experts and the token dispatch between them. In every layer, each token goes to 4 of
32 experts (num_experts_per_tok of num_local_experts), clamped SwiGLU MLPs with biases of 2880
hidden units (intermediate_size).

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
    """Top-k router (``router`` in transformers).

    Each token goes to the top_k (num_experts_per_tok) of num_experts experts. Its logits have a
    learned bias (``router.bias``). The weights are a softmax over the chosen experts' logits (in
    float32), which sum to one.
    """

    def __init__(self, dim: int, num_experts: int, top_k: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.gate = nn.Linear(dim, num_experts, bias=True)

    def init_weights(self, init_std: float) -> None:
        nn.init.normal_(self.gate.weight, mean=0.0, std=init_std)
        nn.init.normal_(self.gate.bias, mean=0.0, std=init_std)

    def forward(
        self, x: torch.Tensor, expert_bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens ``[tokens, dim]`` to ``(weights, experts, logits)``.

        ``weights`` and ``experts`` are ``[tokens, top_k]`` (float32 weights), ``logits`` the
        router's ``[tokens, num_experts]``. ``expert_bias`` shifts which experts are chosen, never
        the weights (auxiliary-loss-free balancing; all zeros unless the trainer updates it).
        """
        logits = self.gate(x)
        logits32 = logits.float()
        experts = torch.topk(logits32 + expert_bias, self.top_k, dim=-1).indices
        weights = F.softmax(logits32.gather(-1, experts), dim=-1)
        return weights, experts, logits


class GroupedExperts(nn.Module):
    """The experts' weights and biases, stacked by expert.

    ``w1`` and ``w3`` are ``[experts, hidden_dim, dim]``, ``w2`` ``[experts, dim, hidden_dim]``
    (transformers' checkpoints hold them stacked and transposed, ``gate_up_proj``
    ``[experts, dim, 2 * hidden_dim]`` with gate and up interleaved column by column, and
    ``down_proj``). ``b1`` and ``b3`` ``[experts, hidden_dim]``, ``b2`` ``[experts, dim]``.

    ``torch._grouped_mm`` multiplies every expert's rows at once where it applies (see
    :func:`grouped_mm_applies`); otherwise, or with ``use_grouped_mm`` off, a loop over the experts
    computes the same values.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        num_experts: int,
        use_grouped_mm: bool,
        limit: float,
        alpha: float,
    ) -> None:
        super().__init__()
        self.use_grouped_mm = use_grouped_mm
        self.limit = limit  # swiglu_limit
        self.alpha = alpha  # swiglu_alpha
        self.w1 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))
        self.w2 = nn.Parameter(torch.empty(num_experts, dim, hidden_dim))
        self.w3 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))
        # Each expert's biases: of the gate (b1) and up (b3) projections, and of the down one (b2).
        self.b1 = nn.Parameter(torch.empty(num_experts, hidden_dim))
        self.b2 = nn.Parameter(torch.empty(num_experts, dim))
        self.b3 = nn.Parameter(torch.empty(num_experts, hidden_dim))

    def init_weights(self, init_std: float) -> None:
        for weight in (self.w1, self.w2, self.w3):
            nn.init.normal_(weight, mean=0.0, std=init_std)
        for bias in (self.b1, self.b2, self.b3):
            nn.init.zeros_(bias)

    def activation(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """The clamped SwiGLU: ``(up + 1) * gate * sigmoid(alpha * gate)``.

        gate is clamped above at ``limit`` (swiglu_limit, 7.0) and up to ``[-limit, limit]``; alpha
        is swiglu_alpha (1.702). transformers' checkpoints interleave gate and up column by column
        in ``gate_up_proj``; the state-dict adapter splits them into w1 and w3.
        """
        gate = gate.clamp(max=self.limit)
        up = up.clamp(min=-self.limit, max=self.limit)
        return (up + 1) * (gate * torch.sigmoid(gate * self.alpha))

    def forward(self, x: torch.Tensor, tokens_per_expert: torch.Tensor) -> torch.Tensor:
        """Tokens ``[routed, dim]`` sorted by expert, ``tokens_per_expert[e]`` of them for expert
        ``e`` (of the experts this module holds), to outputs in the same order."""
        # Under expert parallelism the weights are DTensors sharded by expert: compute with this
        # rank's experts, which the token dispatcher sent these tokens to.
        w1, w2, w3, b1, b2, b3 = (
            p.to_local() if hasattr(p, "to_local") else p
            for p in (self.w1, self.w2, self.w3, self.b1, self.b2, self.b3)
        )
        if self.use_grouped_mm and grouped_mm_applies(x, w1, w2):
            offsets = torch.cumsum(tokens_per_expert, dim=0, dtype=torch.int32)
            # Each row adds its expert's biases.
            b1, b2, b3 = (b.repeat_interleave(tokens_per_expert, dim=0) for b in (b1, b2, b3))
            gate = torch._grouped_mm(x, w1.transpose(-2, -1), offs=offsets) + b1
            up = torch._grouped_mm(x, w3.transpose(-2, -1), offs=offsets) + b3
            h = self.activation(gate, up)
            return torch._grouped_mm(h, w2.transpose(-2, -1), offs=offsets) + b2
        # The reference: one expert after the other.
        outputs = []
        for expert, chunk in enumerate(x.split(tokens_per_expert.tolist())):
            gate = chunk @ w1[expert].t() + b1[expert]
            up = chunk @ w3[expert].t() + b3[expert]
            outputs.append(self.activation(gate, up) @ w2[expert].t() + b2[expert])
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
            model_args.dim,
            model_args.ffn_dim,
            num_experts,
            model_args.use_grouped_mm,
            model_args.swiglu_limit,
            model_args.swiglu_alpha,
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
    router_aux_loss_coef (0.9) to the loss.
    """
    counts = torch.stack([moe.routed_counts for moe in layers]).sum(dim=0)
    probs = torch.stack([moe.router_probs_sum for moe in layers]).sum(dim=0)
    rows = sum(moe.routed_tokens for moe in layers)
    return counts.numel() * torch.sum((counts / rows) * (probs / rows))
