"""AdamW over all model parts, behind one container that DCP can checkpoint."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful
from torch.distributed.tensor import DTensor

from runtime.config import ConfigError

_FLAT = StateDictOptions(flatten_optimizer_state_dict=True)


class OptimizersContainer(Stateful):
    """One optimizer per model part (pipeline stages), stepped and checkpointed together.

    ``state_dict()`` is keyed by parameter FQNs (flattened), so parts on different pipeline ranks
    merge into one DCP checkpoint and reload whatever the parallelism.
    """

    def __init__(self, model_parts: list[nn.Module], optimizers: list[torch.optim.Optimizer]):
        self.model_parts = model_parts
        self.optimizers = optimizers

    def step(self) -> None:
        """Step every optimizer."""
        for optimizer in self.optimizers:
            optimizer.step()

    def zero_grad(self) -> None:
        """Clear every optimizer's gradients."""
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The param groups of all optimizers (for reading the learning rate)."""
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Flattened optimizer state of all parts, keyed by parameter FQN."""
        merged: dict[str, Any] = {}
        for part, optimizer in zip(self.model_parts, self.optimizers, strict=True):
            merged.update(get_optimizer_state_dict(part, optimizer, options=_FLAT))
        return merged

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state produced by ``state_dict`` (possibly under another parallelism)."""
        for part, optimizer in zip(self.model_parts, self.optimizers, strict=True):
            set_optimizer_state_dict(part, optimizer, state_dict, options=_FLAT)


def _optimizer_kwargs(job_config: Any) -> dict[str, Any]:
    config = job_config.optimizer
    kwargs: dict[str, Any] = {
        "lr": config.lr,
        "betas": (config.beta1, config.beta2),
        "eps": config.eps,
        "weight_decay": config.weight_decay,
    }
    if config.implementation == "fused":
        kwargs["fused"] = True
    elif config.implementation == "foreach":
        kwargs["foreach"] = True
    else:
        kwargs["foreach"] = False
    return kwargs


def _param_groups(params: Iterable[nn.Parameter]) -> list[dict[str, Any]]:
    """One group of DTensors and one of plain tensors, where a model has both.

    The fused and foreach kernels take one kind per call; a mixture of experts under tensor
    parallelism keeps plain (replicated) expert weights beside its DTensor attention weights.
    """
    groups: dict[bool, list[nn.Parameter]] = {}
    for param in params:
        groups.setdefault(isinstance(param, DTensor), []).append(param)
    return [{"params": group} for group in groups.values()]


def build_optimizers(
    model_parts: list[nn.Module], job_config: Any, parallel_dims: Any = None
) -> OptimizersContainer:
    """Build ``optimizer.name`` (AdamW or Adam) over each model part's parameters."""
    name = job_config.optimizer.name
    classes = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam}
    if name not in classes:
        raise ConfigError(f"optimizer.name must be AdamW or Adam, got {name!r}")
    make = functools.partial(classes[name], **_optimizer_kwargs(job_config))
    optimizers = [make(_param_groups(part.parameters())) for part in model_parts]
    return OptimizersContainer(model_parts, optimizers)
