"""Training components a TrainSpec points at: optimizers, schedules, loss, tokenizer, data."""

from runtime.components.dataloader import TokenDataLoader, build_dataloader
from runtime.components.loss import build_cross_entropy_loss, cross_entropy_loss
from runtime.components.lr_scheduler import LRSchedulersContainer, build_lr_schedulers
from runtime.components.optimizer import OptimizersContainer, build_optimizers
from runtime.components.tokenizer import LocalTokenizer, build_tokenizer

__all__ = [
    "LRSchedulersContainer",
    "LocalTokenizer",
    "OptimizersContainer",
    "TokenDataLoader",
    "build_cross_entropy_loss",
    "build_dataloader",
    "build_lr_schedulers",
    "build_optimizers",
    "build_tokenizer",
    "cross_entropy_loss",
]
