"""Mixture-of-experts models in the trainer: load-balancing loss, expert-bias updates, load
statistics.

A model part has experts when some module carries both an ``expert_bias`` and a
``tokens_per_expert`` buffer (a package's ``model/moe.py``); its model class then defines
``load_balancing_loss()``. Dense models have no such module and :class:`LoadBalancer` does
nothing for them. Which balancing runs is ``[moe] load_balancing`` (see ``runtime.config.Moe``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from runtime.config import ConfigError


def moe_modules(model_parts: list[nn.Module]) -> list[nn.Module]:
    """The modules with experts in ``model_parts``, in model order."""
    return [
        module
        for part in model_parts
        for module in part.modules()
        if hasattr(module, "expert_bias") and hasattr(module, "tokens_per_expert")
    ]


@dataclass(frozen=True)
class LoadStats:
    """One optimizer step's routing: the busiest expert's tokens over the mean, the largest over
    this rank's layers (1.0: perfectly even)."""

    max_over_mean: float


class LoadBalancer:
    """Adds the load-balancing loss and updates expert biases, as ``[moe]`` says.

    ``aux_loss``: :meth:`loss` returns ``coef * model.load_balancing_loss()`` for each training
    forward (``coef``: ``[moe] aux_loss_coef``, else the model's router_aux_loss_coef).
    ``expert_bias``: before each optimizer step, :meth:`before_optimizer_step` moves every MoE
    layer's bias by ``expert_bias_update_rate`` towards the experts that got fewer tokens than
    the mean (token counts summed over the data-parallel ranks and micro-batches; the change is
    centered, so the biases keep a zero mean). Both read ``tokens_per_expert`` and zero it.
    """

    def __init__(self, config: Any, model_parts: list[nn.Module], model_args: Any, dp_mesh: Any):
        self.mode = config.load_balancing
        self.rate = config.expert_bias_update_rate
        self.layers = moe_modules(model_parts)
        self.dp_group = dp_mesh.get_group() if dp_mesh is not None else None
        coef = config.aux_loss_coef
        if coef is None:
            coef = getattr(model_args, "router_aux_loss_coef", 0.0)
        self.coef = float(coef)
        self.parts = model_parts
        if (
            self.layers
            and self.mode == "aux_loss"
            and not hasattr(model_parts[0], "load_balancing_loss")
        ):
            raise ConfigError(
                "moe.load_balancing aux_loss: the model has experts but no load_balancing_loss(); "
                "use expert_bias or none"
            )

    @property
    def active(self) -> bool:
        return bool(self.layers)

    def loss(self) -> torch.Tensor | None:
        """The weighted load-balancing loss of the last forward (None: not balancing by loss)."""
        if not self.layers or self.mode != "aux_loss":
            return None
        return self.coef * self.parts[0].load_balancing_loss()

    @torch.no_grad()
    def before_optimizer_step(self) -> LoadStats | None:
        """Sum the step's token counts over the data-parallel ranks, update the expert biases
        (``expert_bias`` mode) and reset the counts; returns the step's load statistics."""
        if not self.layers:
            return None
        counts = torch.stack([layer.tokens_per_expert for layer in self.layers])
        if self.dp_group is not None:
            dist.all_reduce(counts, group=self.dp_group)
        mean = counts.mean(dim=1, keepdim=True)
        if self.mode == "expert_bias":
            delta = self.rate * torch.sign(mean - counts)
            delta = delta - delta.mean(dim=1, keepdim=True)
            for layer, change in zip(self.layers, delta, strict=True):
                layer.expert_bias.add_(change)
        for layer in self.layers:
            layer.tokens_per_expert.zero_()
        ratio = counts.max(dim=1).values / mean.squeeze(1).clamp(min=1e-9)
        return LoadStats(max_over_mean=float(ratio.max()))
