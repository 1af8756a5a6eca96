"""Expert parallelism: a mixture-of-experts layer's experts split over ranks, tokens exchanged
by all-to-all.

A model's MoE module (a package's ``model/moe.py``) holds its experts' stacked weights in
``moe.experts`` (``w1``, ``w2``, ``w3``: ``[num_experts, ...]``) and sends tokens through
``moe.dispatcher`` (``dispatch(x, weights, experts)`` -> rows sorted by expert, rows per expert,
state; ``combine(rows, state, out)``). :func:`apply_expert_parallel` shards the weights by expert
over the EP mesh (``Shard(0)`` DTensors; the experts compute with their local shard) and swaps
the dispatcher for :class:`AllToAllDispatcher`. Nothing here knows a family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed._functional_collectives import (
    all_to_all_single,
    all_to_all_single_autograd,
)
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Shard, distribute_tensor


@dataclass
class _Exchange:
    """What :meth:`AllToAllDispatcher.combine` needs to undo a dispatch."""

    token_ids: torch.Tensor  # [tokens * top_k]: each locally routed row's token
    weights: torch.Tensor  # [tokens * top_k]: its router weight
    order: torch.Tensor  # received rows -> sorted by local expert
    sent: list[int]  # rows sent to each EP rank
    received: list[int]  # rows received from each EP rank


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient times ``factor`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


class AllToAllDispatcher:
    """Sends each routed row to the EP rank that holds its expert, and the result back.

    Experts are split in contiguous blocks: rank ``r`` holds experts ``r * local .. (r + 1) *
    local - 1``. Rows travel with the autograd-aware ``all_to_all_single``, so gradients take
    the same way back.

    An expert's weights see the tokens of every EP rank, so their gradient sums ``ep`` ranks'
    losses where every other parameter's sums one: the rows' gradient is divided by ``ep``
    between the experts and the combine, and multiplied back before it returns to the tokens'
    ranks. FSDP's mean over the ranks holding the same experts then makes it the data-parallel
    mean, as for every other gradient.
    """

    def __init__(self, num_experts: int, ep_mesh: DeviceMesh) -> None:
        self.num_experts = num_experts
        self.group = ep_mesh.get_group()
        self.ep = ep_mesh.size()
        if num_experts % self.ep:
            raise ValueError(f"{num_experts} experts do not split over {self.ep} EP ranks")
        self.local = num_experts // self.ep

    def dispatch(
        self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, _Exchange]:
        flat = experts.flatten()
        counts = torch.bincount(flat, minlength=self.num_experts)
        sort = torch.argsort(flat, stable=True)
        token_ids = sort // experts.shape[1]
        rows = x[token_ids]
        # [source rank, local expert]: how many rows each rank sends to each of our experts.
        incoming = all_to_all_single(counts, None, None, group=self.group)
        incoming = torch.ops._c10d_functional.wait_tensor(incoming).view(self.ep, self.local)
        sent = counts.view(self.ep, self.local).sum(dim=1).tolist()
        received = incoming.sum(dim=1).tolist()
        rows = _ScaleGrad.apply(
            all_to_all_single_autograd(rows, received, sent, group=self.group), float(self.ep)
        )
        # Received rows come by source rank, each rank's sorted by expert: regroup by expert.
        expert_of_row = torch.repeat_interleave(
            torch.arange(self.local, device=x.device).repeat(self.ep), incoming.flatten()
        )
        order = torch.argsort(expert_of_row, stable=True)
        state = _Exchange(token_ids, weights.flatten()[sort], order, sent, received)
        return rows[order], incoming.sum(dim=0), state

    def combine(self, rows: torch.Tensor, state: _Exchange, out: torch.Tensor) -> torch.Tensor:
        unsorted = torch.empty_like(rows).index_copy(0, state.order, rows)
        unsorted = _ScaleGrad.apply(unsorted, 1.0 / self.ep)
        back = all_to_all_single_autograd(unsorted, state.sent, state.received, group=self.group)
        weighted = (back.float() * state.weights[:, None]).to(back.dtype)
        return out.index_add(0, state.token_ids, weighted)


def apply_expert_parallel(moe: nn.Module, ep_mesh: DeviceMesh) -> None:
    """Shard ``moe``'s experts by expert over ``ep_mesh`` and exchange tokens by all-to-all."""
    experts = moe.experts
    for name, param in list(experts.named_parameters(recurse=False)):
        sharded = distribute_tensor(param.data, ep_mesh, [Shard(0)])
        experts.register_parameter(name, nn.Parameter(sharded, requires_grad=param.requires_grad))
    moe.dispatcher = AllToAllDispatcher(moe.dispatcher.num_experts, ep_mesh)
