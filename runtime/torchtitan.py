"""The model-agnostic half of a package's torchtitan 0.3.0 bridge (``config_registry.py``).

torchtitan is an optional dependency (``pip install 'model-scaffolder[torchtitan]'``): only a
package's ``config_registry`` imports this module, and only torchtitan imports that (``python -m
torchtitan.train --module <package> --config <toml stem>``). Nothing here knows a model family.

- :func:`disable_gradient_division`: torchtitan's loss is a *sum* over this rank's tokens divided
  by the global count of valid tokens, so data-parallel gradients must be summed, not averaged.
- :class:`MockDataLoader`: ``training.dataset = "mock"`` of the TOML configs, the same token
  batches as ``runtime.components.dataloader`` (sample ``k`` of one global stream).
- :class:`NoTokenizer`: the mock data needs no tokenizer files.
- :class:`RuntimeLRSchedulers`: the runtime's ``[lr_scheduler]`` curve (torchtitan 0.3.0 changed
  its own warmup and decay formulas).
- :func:`moe_load_balancing_hook`: ``post_optimizer_build_fn`` doing what the runtime does before
  each optimizer step for mixture-of-experts models (``runtime.moe.LoadBalancer``).
- :class:`AddAuxiliaryLoss`: adds a load-balancing loss's gradient inside the model's forward,
  since torchtitan's trainer backpropagates only the language-model loss.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torchtitan.components.dataloader import BaseDataLoader
from torchtitan.components.optimizer import LRSchedulersContainer
from torchtitan.components.tokenizer import BaseTokenizer

from runtime.components.dataloader import TokenDataLoader, mock_sample
from runtime.components.lr_scheduler import lr_factor
from runtime.moe import LoadBalancer
from runtime.trainer import gradient_accumulation_steps


def disable_gradient_division(model: nn.Module) -> None:
    """Sum gradients over the data-parallel ranks (FSDP averages them by default).

    torchtitan divides each rank's summed loss by the global number of valid tokens, so the
    sum over ranks is already the mean: averaging again would make gradients ``1/dp`` too small.
    """
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)


class NoTokenizer(BaseTokenizer):
    """The tokenizer of a job on mock data: token ids come straight from the data loader."""

    @dataclass(kw_only=True, slots=True)
    class Config(BaseTokenizer.Config):
        pass

    def __init__(self, config: Config | None = None, *, tokenizer_path: str | None = None):
        super().__init__()

    def encode(self, *args: Any, **kwargs: Any) -> list[int]:
        raise NotImplementedError("mock data has no text; give a tokenizer for a text dataset")

    def decode(self, *args: Any, **kwargs: Any) -> str:
        raise NotImplementedError("mock data has no text; give a tokenizer for a text dataset")

    def get_vocab_size(self) -> int:
        return 0


class RuntimeLRSchedulers(LRSchedulersContainer):
    """torchtitan's scheduler container on the runtime's learning-rate curve.

    The same fields as torchtitan's ``lr_scheduler`` config, read as ``runtime.train`` reads
    ``[lr_scheduler]`` (``runtime.components.lr_scheduler.lr_factor``): warmup rises from
    ``1/(warmup+1)``, where torchtitan 0.3.0 starts at ``1/warmup`` and decays on a shifted
    step count, so without this the two engines' losses part from step 2 on.
    """

    @dataclass(kw_only=True, slots=True)
    class Config(LRSchedulersContainer.Config):
        def build(self, *, optimizers: Any, training_steps: int) -> LRSchedulersContainer:
            total_steps = self.total_steps if self.total_steps is not None else training_steps
            factor = functools.partial(
                lr_factor,
                warmup_steps=self.warmup_steps,
                total_steps=total_steps,
                decay_ratio=self.decay_ratio,
                decay_type=self.decay_type,
                min_lr_factor=self.min_lr_factor,
            )
            return RuntimeLRSchedulers(optimizers, factor)


class MockDataLoader(BaseDataLoader):
    """Mock token batches: arithmetic progressions mod the vocabulary, ``runtime``'s mock stream.

    Batch ``k`` holds samples ``[k*b*D, (k+1)*b*D)`` of one global stream (``b`` local batch,
    ``D`` data-parallel degree), data-parallel rank ``r`` the ``r``-th slice: exactly the
    batches ``runtime.train`` feeds with ``training.dataset = "mock"``.
    """

    @dataclass(kw_only=True, slots=True)
    class Config(BaseDataLoader.Config):
        dataset: str = "mock"
        vocab_size: int = 0
        seed: int = 42

    def __init__(
        self,
        config: Config,
        *,
        dp_world_size: int,
        dp_rank: int,
        seq_len: int,
        local_batch_size: int,
        **kwargs: Any,
    ):
        if config.vocab_size <= 0:
            raise ValueError("dataloader.vocab_size must be the model's vocabulary size")
        samples = functools.partial(
            mock_sample, seq_len=seq_len, vocab_size=config.vocab_size, seed=config.seed
        )
        self._loader = TokenDataLoader(samples, local_batch_size, dp_world_size, dp_rank)

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        while True:
            inputs, labels = self._loader.next_batch()
            yield {"input": inputs}, labels

    def state_dict(self) -> dict[str, Any]:
        return self._loader.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loader.load_state_dict(state_dict)


class AddAuxiliaryLoss(torch.autograd.Function):
    """Returns ``output`` unchanged; backward also sends gradient 1 into ``aux_loss``.

    torchtitan's trainer backpropagates only its language-model loss, so a model adds its
    (already weighted) load-balancing loss to the graph this way.
    """

    @staticmethod
    def forward(ctx: Any, output: torch.Tensor, aux_loss: torch.Tensor) -> torch.Tensor:
        ctx.aux_shape = aux_loss.shape
        ctx.aux_dtype = aux_loss.dtype
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad_aux = torch.ones(ctx.aux_shape, dtype=ctx.aux_dtype, device=grad_output.device)
        return grad_output, grad_aux


def aux_loss_weight(load_balancing: str, coef: float, training: Any, parallel_dims: Any) -> float:
    """The factor on the load-balancing loss that gives the runtime's gradients (0: not used).

    ``load_balancing`` is ``[moe] load_balancing``: only ``"aux_loss"`` trains with the loss.
    The runtime adds ``coef * aux / accumulation steps`` to each micro-batch's mean loss and
    averages gradients over the data-parallel ranks; torchtitan sums them (see
    :func:`disable_gradient_division`), so each rank weighs its term by ``1 / (dp * steps)``.
    """
    if load_balancing != "aux_loss":
        return 0.0
    dp = parallel_dims.dp_replicate * parallel_dims.dp_shard
    return coef / (dp * gradient_accumulation_steps(training, dp))


def moe_load_balancing_hook(load_balancing: str, expert_bias_update_rate: float, coef: float):
    """A ``post_optimizer_build_fn``: balance the experts before each optimizer step.

    As in the runtime (``runtime.moe.LoadBalancer``): sum the step's tokens per expert over the
    data-parallel ranks, move the expert biases (``load_balancing = "expert_bias"``) and reset
    the counts. The aux-loss mode adds its loss in the model's forward instead.
    """

    def register(optimizers: Any, model_parts: list[nn.Module], parallel_dims: Any) -> None:
        config = SimpleNamespace(
            load_balancing=load_balancing,
            expert_bias_update_rate=expert_bias_update_rate,
            aux_loss_coef=coef,
        )
        dp_mesh = parallel_dims.get_optional_mesh("batch") if parallel_dims.dp_enabled else None
        balancer = LoadBalancer(config, model_parts, None, dp_mesh)
        if balancer.active:

            def before_step(*args: Any, **kwargs: Any) -> None:
                balancer.before_optimizer_step()

            optimizers.register_step_pre_hook(before_step)

    return register
