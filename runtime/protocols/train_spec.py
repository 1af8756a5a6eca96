"""TrainSpec: everything the trainer needs to build, parallelize and train one model package."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.protocols.model import BaseModelArgs
from runtime.protocols.state_dict_adapter import StateDictAdapter


@dataclass
class TrainSpec:
    """One model package's entry into the runtime.

    ``model_args`` maps flavor names (``"debugmodel"``, ``"1.1B"``, ...) to ``ModelArgs``.
    ``parallelize_fn(model, parallel_dims, job_config)`` applies TP, activation checkpointing,
    compile and FSDP in place and returns the model. ``pipelining_fn`` splits the model into
    pipeline stages and returns ``(schedule, model_parts, has_first_stage, has_last_stage)``.
    """

    name: str
    model_cls: type
    model_args: Mapping[str, BaseModelArgs]
    parallelize_fn: Callable[..., Any]
    pipelining_fn: Callable[..., Any] | None
    build_optimizers_fn: Callable[..., Any]
    build_lr_schedulers_fn: Callable[..., Any]
    build_dataloader_fn: Callable[..., Any]
    build_tokenizer_fn: Callable[..., Any] | None
    build_loss_fn: Callable[..., Any]
    state_dict_adapter: type[StateDictAdapter] | None = None


_REGISTRY: dict[str, TrainSpec] = {}


def register_train_spec(spec: TrainSpec) -> None:
    """Register ``spec`` under ``spec.name``; re-registering the same name replaces it."""
    _REGISTRY[spec.name] = spec


def get_train_spec(name: str) -> TrainSpec:
    """Return the registered spec called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ValueError(
            f"no train spec named {name!r} is registered (registered: {known}); "
            "import the model package first"
        ) from None


def list_train_specs() -> list[str]:
    """Names of all registered specs."""
    return sorted(_REGISTRY)
