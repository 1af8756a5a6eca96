{#- Mixture-of-experts packages only: render.py removes this file from the others. -#}
{%- if cookiecutter.views.moe -%}
{%- set v = cookiecutter.views.moe -%}
"""{% filter prose %}
The mixture-of-experts MLP of {{ cookiecutter.display_name }}.

Router, stacked experts and the token dispatch between them.
{{ v.overview | join("\n") }}

Expert parallelism (``infra/``) swaps the :class:`TokenDispatcher` for one that exchanges tokens between ranks; nothing here knows about it.
{% endfilter %}
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .args import ModelArgs


class Router(nn.Module):
    """{{ v.router_doc | prose(indent=4, first_indent=0) }}
    """

    def __init__(self, dim: int, num_experts: int, top_k: int{{ v.router_params }}) -> None:
        super().__init__()
        self.top_k = top_k
{%- for line in v.router_init %}
        {{ line }}
{%- endfor %}
        self.gate = nn.Linear(dim, num_experts, bias={{ v.router_bias | py }})

    def init_weights(self, init_std: float) -> None:
        nn.init.normal_(self.gate.weight, mean=0.0, std=init_std)
{%- if v.router_bias %}
        nn.init.normal_(self.gate.bias, mean=0.0, std=init_std)
{%- endif %}

    def forward(
        self, x: torch.Tensor, expert_bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens ``[tokens, dim]`` to ``(weights, experts, logits)``.

        ``weights`` and ``experts`` are ``[tokens, top_k]`` (float32 weights), ``logits`` the
        router's ``[tokens, num_experts]``. ``expert_bias`` shifts which experts are chosen, never
        the weights (auxiliary-loss-free balancing; all zeros unless the trainer updates it).
        """
        logits = self.gate(x)
{% include 'parts/moe/' ~ v.routing ~ '.py.j2' %}
        return weights, experts, logits


class GroupedExperts(nn.Module):
    """{{ v.experts_doc | prose(indent=4, first_indent=0) }}
    """

{%- if v.expert_biases %}
{% include 'parts/moe/experts_init_biased.py.j2' %}
{%- else %}
    def __init__(self, dim: int, hidden_dim: int, num_experts: int, use_grouped_mm: bool) -> None:
        super().__init__()
        self.use_grouped_mm = use_grouped_mm
        self.w1 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))
        self.w2 = nn.Parameter(torch.empty(num_experts, dim, hidden_dim))
        self.w3 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))

    def init_weights(self, init_std: float) -> None:
        for weight in (self.w1, self.w2, self.w3):
            nn.init.normal_(weight, mean=0.0, std=init_std)
{%- endif %}

    def forward(self, x: torch.Tensor, tokens_per_expert: torch.Tensor) -> torch.Tensor:
        """Tokens ``[routed, dim]`` sorted by expert, ``tokens_per_expert[e]`` of them for expert
        ``e`` (of the experts this module holds), to outputs in the same order."""
{%- if v.expert_biases %}
{% include 'parts/moe/experts_forward_biased.py.j2' %}
{%- else %}
        # Under expert parallelism the weights are DTensors sharded by expert: compute with this
        # rank's experts, which the token dispatcher sent these tokens to.
        w1, w2, w3 = (w.to_local() if hasattr(w, "to_local") else w for w in (self.w1, self.w2, self.w3))
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
{%- endif %}


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
{% if v.shared %}


class SharedExpert(nn.Module):
    """{{ v.shared_doc | prose(indent=4, first_indent=0) }}
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
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
{% endif %}


class MoE(nn.Module):
    """{{ v.moe_doc | prose(indent=4, first_indent=0) }}
    """

    def __init__(self, model_args: ModelArgs) -> None:
        super().__init__()
        num_experts = model_args.num_experts
        self.router = Router(model_args.dim, num_experts, model_args.top_k{{ v.router_args }})
        self.experts = GroupedExperts(
            model_args.dim, model_args.{{ v.ffn_arg }}, num_experts, model_args.use_grouped_mm{{ v.experts_args }}
        )
        self.dispatcher = TokenDispatcher(num_experts)
{%- if v.shared %}
        self.shared_expert = SharedExpert(model_args.dim, {{ v.shared_dim }})
{%- if v.shared_gate %}
        self.shared_expert_gate = nn.Linear(model_args.dim, 1, bias=False)
{%- endif %}
{%- endif %}
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
{%- if v.shared %}
        self.shared_expert.init_weights(init_std)
{%- if v.shared_gate %}
        nn.init.normal_(self.shared_expert_gate.weight, mean=0.0, std=init_std)
{%- endif %}
{%- endif %}
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
{%- if v.shared %}
{%- if v.shared_gate %}
        out = out + F.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
{%- else %}
        out = out + self.shared_expert(x)
{%- endif %}
{%- endif %}
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
    """{{ v.aux_doc | prose(indent=4, first_indent=0) }}
    """
    counts = torch.stack([moe.routed_counts for moe in layers]).sum(dim=0)
    probs = torch.stack([moe.router_probs_sum for moe in layers]).sum(dim=0)
    rows = sum(moe.routed_tokens for moe in layers)
    return counts.numel() * torch.sum((counts / rows) * (probs / rows))
{% endif %}
