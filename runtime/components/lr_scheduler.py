"""Warmup followed by linear / cosine / sqrt decay, as ``LambdaLR`` over every optimizer."""

from __future__ import annotations

import functools
import math
from typing import Any

from torch.distributed.checkpoint.stateful import Stateful
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(
    step: int,
    warmup_steps: int,
    total_steps: int,
    decay_ratio: float | None,
    decay_type: str,
    min_lr_factor: float,
) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Warmup rises linearly from ``1/(warmup+1)`` to 1; then the rate stays at 1 until the decay
    phase (the last ``decay_ratio`` of the steps, or all steps after warmup when ``None``), which
    falls to ``min_lr_factor`` following ``decay_type``.
    """
    warmup_steps = min(warmup_steps, total_steps)
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = total_steps - warmup_steps
    if decay_ratio is not None:
        decay_steps = min(decay_steps, round(total_steps * decay_ratio))
    decay_start = total_steps - decay_steps
    if step < decay_start or decay_steps <= 0:
        return 1.0
    progress = min(1.0, (step - decay_start + 1) / (decay_steps + 1))
    if decay_type == "linear":
        remaining = 1.0 - progress
    elif decay_type == "cosine":
        remaining = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif decay_type == "sqrt":
        remaining = 1.0 - math.sqrt(progress)
    else:
        raise ValueError(f"unknown decay_type {decay_type!r}")
    return min_lr_factor + (1.0 - min_lr_factor) * remaining


class LRSchedulersContainer(Stateful):
    """One ``LambdaLR`` per optimizer, stepped together; checkpoints as one state."""

    def __init__(self, optimizers: Any, factor: Any):
        self.schedulers = [LambdaLR(optimizer, factor) for optimizer in optimizers.optimizers]

    def step(self) -> None:
        """Advance every scheduler by one optimizer step."""
        for scheduler in self.schedulers:
            scheduler.step()

    def get_last_lr(self) -> float:
        """The current learning rate (identical across parts)."""
        return self.schedulers[0].get_last_lr()[0]

    def state_dict(self) -> dict[str, Any]:
        """The schedulers' shared state (their step count)."""
        return {"last_epoch": self.schedulers[0].last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the step count on every scheduler and recompute the learning rates."""
        for scheduler in self.schedulers:
            scheduler.last_epoch = state_dict["last_epoch"] - 1
            scheduler.step()


def build_lr_schedulers(optimizers: Any, job_config: Any) -> LRSchedulersContainer:
    """Schedulers for ``optimizers`` (an ``OptimizersContainer``) from ``[lr_scheduler]``."""
    config = job_config.lr_scheduler
    factor = functools.partial(
        lr_factor,
        warmup_steps=config.warmup_steps,
        total_steps=job_config.training.steps,
        decay_ratio=config.decay_ratio,
        decay_type=config.decay_type,
        min_lr_factor=config.min_lr_factor,
    )
    return LRSchedulersContainer(optimizers, factor)
