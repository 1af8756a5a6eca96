"""Distributed Checkpoint (DCP) saving, automatic resume and retention."""

from __future__ import annotations

import re
import shutil
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful

_STEP_FOLDER = re.compile(r"^step-(\d+)$")


class ModelState(Stateful):
    """The parameters of all model parts as one FQN-keyed state (sharded DTensors stay sharded)."""

    def __init__(self, model_parts: list[nn.Module]):
        self.model_parts = model_parts

    def state_dict(self) -> dict[str, Any]:
        """Merged state dicts of the parts (disjoint FQNs)."""
        merged: dict[str, Any] = {}
        for part in self.model_parts:
            merged.update(get_model_state_dict(part))
        return merged

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load each part's own keys."""
        for part in self.model_parts:
            set_model_state_dict(part, state_dict, options=StateDictOptions(strict=False))


@dataclass
class TrainState(Stateful):
    """Loop counters saved with the checkpoint."""

    step: int = 0

    def state_dict(self) -> dict[str, Any]:
        """``{"step": last completed step}``."""
        return {"step": self.step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the step counter."""
        self.step = int(state_dict["step"])


def completed_steps(folder: Path) -> list[int]:
    """Steps with a complete checkpoint in ``folder`` (DCP writes ``.metadata`` last)."""
    if not folder.is_dir():
        return []
    steps = []
    for child in folder.iterdir():
        match = _STEP_FOLDER.match(child.name)
        if match and (child / ".metadata").is_file():
            steps.append(int(match.group(1)))
    return sorted(steps)


class CheckpointManager:
    """Saves ``states`` every ``checkpoint.interval`` steps and at the end; resumes the latest.

    ``states`` maps names to Stateful objects (model, optimizer, lr_scheduler, dataloader,
    train_state). Checkpoints live in ``<dump_folder>/<checkpoint.folder>/step-<N>``.
    """

    def __init__(self, states: dict[str, Stateful], job_config: Any):
        config = job_config.checkpoint
        self.states = states
        self.enabled = config.enable
        self.interval = config.interval
        self.keep_latest_k = config.keep_latest_k
        self.async_mode = config.async_mode
        self.folder = Path(job_config.job.dump_folder) / config.folder
        self._pending: Future | None = None
        self._async_group = None
        if self.enabled and self.async_mode == "async":
            self._async_group = dist.new_group(backend="gloo")

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        steps = completed_steps(self.folder)
        return steps[-1] if steps else None

    def load_latest(self) -> int | None:
        """Load the newest checkpoint into ``states``; returns its step (None: nothing to load)."""
        if not self.enabled:
            return None
        step = self.latest_step()
        if step is not None:
            dcp.load(self.states, checkpoint_id=str(self.folder / f"step-{step}"))
        return step

    def load_from(self, path: str, keys: tuple[str, ...] = ("model",)) -> None:
        """Load only ``keys`` of ``states`` from a DCP checkpoint folder (initial weights)."""
        dcp.load({key: self.states[key] for key in keys}, checkpoint_id=path)

    def maybe_save(self, step: int, final: bool = False) -> bool:
        """Save at interval steps and at the final step; returns whether it saved."""
        if not self.enabled or (step % self.interval and not final):
            return False
        self.save(step)
        return True

    def save(self, step: int) -> None:
        """Write ``step-<step>`` (in the background in async mode) and drop old checkpoints."""
        self.wait()
        checkpoint_id = str(self.folder / f"step-{step}")
        if self.async_mode == "async":
            self._pending = dcp.async_save(
                self.states, checkpoint_id=checkpoint_id, process_group=self._async_group
            )
        else:
            dcp.save(self.states, checkpoint_id=checkpoint_id)
            self._purge()

    def wait(self) -> None:
        """Block until a pending async save has finished."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None
            self._purge()

    def close(self) -> None:
        """Finish pending saves."""
        self.wait()

    def _purge(self) -> None:
        if self.keep_latest_k <= 0 or dist.get_rank() != 0:
            return
        for step in completed_steps(self.folder)[: -self.keep_latest_k]:
            shutil.rmtree(self.folder / f"step-{step}", ignore_errors=True)
