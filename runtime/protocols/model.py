"""Model protocols: the args dataclass base and the shape every generated model has."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


@dataclass
class BaseModelArgs:
    """Base of every generated ``ModelArgs`` dataclass.

    Subclasses hold the model's dimensions and feature switches and implement the two hooks the
    trainer calls.
    """

    _enforced: str = "This field is used to enforce all fields have defaults."

    @abstractmethod
    def update_from_config(self, job_config: Any, **kwargs: Any) -> None:
        """Adjust the args from the training config (sequence length, for instance)."""

    @abstractmethod
    def get_nparams_and_flops(self, model: nn.Module, seq_len: int) -> tuple[int, int]:
        """Return ``(number of parameters, training FLOPs per token)`` for ``model``."""


class ModelProtocol(Protocol):
    """What the trainer needs from a model class."""

    def __init__(self, model_args: BaseModelArgs) -> None: ...

    def init_weights(self, buffer_device: torch.device | None = None) -> None:
        """Initialize parameters and (re)compute buffers, recursively per submodule."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map token ids ``[batch, seq]`` to logits ``[batch, seq, vocab]``."""


class FusedOutputProtocol(Protocol):
    """Optional: what lets the trainer run the output projection inside its loss.

    A model whose logits are ``output_transform(output(h))`` (``output_transform`` optional,
    elementwise: a softcap, a scale) of its final hidden states ``h``, with ``output`` an
    ``nn.Linear`` without bias, and a ``skip_output`` switch: when the trainer sets it,
    ``forward`` returns ``h`` (``[batch, seq, dim]``) instead of logits. The trainer then computes
    the loss with ``runtime.components.loss.fused_output_cross_entropy_loss``, which applies
    ``output.weight`` and ``output_transform`` chunk by chunk over tokens, so that training
    never holds ``[tokens, vocab]`` logits (``training.fused_output_loss``; ``"auto"`` fuses
    large logits).
    Evaluation, export and tests call ``forward`` with the switch off and get logits. Like
    torchtitan's ``_skip_lm_head``, it is an attribute, not a ``forward`` argument, because
    pipeline schedules call ``forward`` with positional inputs only.
    """

    skip_output: bool
    output: nn.Linear

    def output_transform(self, logits: torch.Tensor) -> torch.Tensor:
        """Optional: what ``forward`` applies to the output projection's result."""
