"""Distributed Checkpoint (DCP) saving, automatic resume and retention."""

from __future__ import annotations

import pickle
import re
import shutil
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful

from runtime.config import ConfigError

_STEP_FOLDER = re.compile(r"^step-(\d+)$")


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles a DCP ``.metadata`` file, refusing any class a checkpoint's metadata does not
    use: a crafted checkpoint folder cannot run code when it is loaded."""

    _MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem")
    _NAMES = {
        ("pathlib", "PosixPath"),
        ("pathlib", "WindowsPath"),
        ("pathlib", "PurePosixPath"),
        ("torch", "Size"),
        ("torch.serialization", "_get_layout"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str) -> Any:
        allowed = (module, name) in self._NAMES or (
            module in self._MODULES and not name.startswith("__")
        )
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            allowed = True
        if not allowed:
            raise pickle.UnpicklingError(f"checkpoint metadata names {module}.{name}: refused")
        return super().find_class(module, name)


class SafeReader(FileSystemReader):
    """DCP's file reader with metadata read by :class:`_MetadataUnpickler`."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as metadata_file:
            metadata = _MetadataUnpickler(metadata_file).load()
        if not isinstance(metadata, Metadata):
            raise pickle.UnpicklingError(f"{path} holds no checkpoint metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's load planner with non-tensor items read by ``torch.load(weights_only=True)``."""

    def load_bytes(self, read_item: Any, value: Any) -> None:
        fqn = read_item.dest_index.fqn
        loaded = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[fqn], loaded)
        else:
            self.state_dict[fqn] = loaded


def safe_load(state: dict[str, Any], path: str | Path) -> None:
    """``dcp.load`` of ``path`` into ``state`` that unpickles nothing but data."""
    dcp.load(
        state,
        checkpoint_id=str(path),
        storage_reader=SafeReader(str(path)),
        planner=SafeLoadPlanner(),
    )


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


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, a quota, permissions): one line, exit 1."""

    exit_code = 1


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind a failed save: ``exc`` itself, or one a rank reported to DCP."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, CheckpointException):
        for failure, _trace in exc.failures.values():
            found = _os_error(failure)
            if found is not None:
                return found
    cause = exc.__cause__ or exc.__context__
    return _os_error(cause) if cause is not None else None


def _free_space(folder: Path) -> str:
    """The free space of the file system holding ``folder``, in words."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown space"
    return f"{free / 2**30:.1f} GiB" if free >= 2**30 else f"{free / 2**20:.1f} MiB"


def _why(exc: BaseException) -> str:
    """One line saying why a load failed (DCP's exception carries every rank's traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]


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
        self._pending_target: tuple[Path, bool] = (self.folder, True)  # (step folder, existed)
        self._async_group = None
        if self.enabled and self.async_mode == "async":
            self._async_group = dist.new_group(backend="gloo")

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        steps = completed_steps(self.folder)
        return steps[-1] if steps else None

    def latest_description(self) -> str:
        """Where the newest complete checkpoint is, in words (for messages)."""
        if not self.enabled:
            return "checkpointing is off"
        self.wait()
        step = self.latest_step()
        if step is None:
            return f"no checkpoint in {self.folder} yet"
        return f"the newest checkpoint is {self.folder / f'step-{step}'}"

    def load_latest(self) -> int | None:
        """Load the newest checkpoint that loads into ``states``; returns its step (None:
        nothing to load).

        A complete-looking checkpoint that fails to load (a truncated or corrupt file) is
        skipped with a warning naming it and why, and the one before is tried; when none loads
        the run stops with one line (it never silently starts from scratch).
        """
        if not self.enabled:
            return None
        failures = []
        for step in reversed(completed_steps(self.folder)):
            path = self.folder / f"step-{step}"
            error = self._try_load(path)
            if error is None:
                return step
            failures.append(f"{path.name}: {error}")
            if dist.get_rank() == 0:
                print(f"warning: checkpoint {path} does not load ({error}); trying an older one")
        if failures:
            raise ConfigError(
                f"no checkpoint in {self.folder} loads ({'; '.join(failures)}); move the folder "
                "away to start from scratch"
            )
        return None

    def _try_load(self, path: Path) -> str | None:
        """Load ``path`` into ``states``; None if every rank did, else the first line of why not."""
        error = None
        try:
            safe_load(self.states, path)
        # DCP raises the same CheckpointException (a BaseException) on every rank.
        except (Exception, CheckpointException) as exc:
            error = _why(exc)
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL reduces GPU tensors
        ok = torch.tensor([0.0 if error else 1.0], device=device)
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if error is None and not bool(ok.item()):
            error = "another rank failed to load it"
        return error

    def load_from(self, path: str, keys: tuple[str, ...] = ("model",)) -> None:
        """Load only ``keys`` of ``states`` from a DCP checkpoint folder (initial weights)."""
        try:
            safe_load({key: self.states[key] for key in keys}, path)
        except (Exception, CheckpointException) as exc:
            raise ConfigError(
                f"checkpoint.initial_load_path {path} does not load: {_why(exc)}"
            ) from None

    def due(self, step: int, final: bool = False) -> bool:
        """Whether :meth:`maybe_save` saves at ``step``."""
        return self.enabled and (step % self.interval == 0 or final)

    def maybe_save(self, step: int, final: bool = False) -> bool:
        """Save at interval steps and at the final step; returns whether it saved."""
        if not self.due(step, final):
            return False
        self.save(step)
        return True

    def save(self, step: int) -> None:
        """Write ``step-<step>`` (in the background in async mode) and drop old checkpoints.

        A write that fails for a reason of the file system (a full disk, a quota, permissions)
        raises :class:`CheckpointWriteError` naming the folder; the incomplete ``step-<step>``
        folder is removed when this save created it, and the checkpoints before it are kept.
        """
        self.wait()
        path = self.folder / f"step-{step}"
        target = (path, path.exists())
        if self.async_mode == "async":
            self._pending = dcp.async_save(
                self.states, checkpoint_id=str(path), process_group=self._async_group
            )
            self._pending_target = target
        else:
            try:
                dcp.save(self.states, checkpoint_id=str(path))
            except (Exception, CheckpointException) as exc:
                self._write_failed(exc, *target)
            self._purge()

    def wait(self) -> None:
        """Block until a pending async save has finished."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                pending.result()
            except (Exception, CheckpointException) as exc:
                self._write_failed(exc, *self._pending_target)
            self._purge()

    def _write_failed(self, exc: BaseException, path: Path, existed: bool) -> None:
        """Turn a save DCP could not write into one line; re-raise anything else.

        DCP reports each rank's failure to write as a CheckpointException; the OSError behind
        it is named when there is one (torch's zip writer reports a refused write as a
        RuntimeError of its own, so the free space is named too).
        """
        if not isinstance(exc, OSError | CheckpointException):
            raise exc
        error = _os_error(exc)
        if error is not None:
            reason = f"{error.strerror or error} (errno {error.errno})"
        elif isinstance(exc, CheckpointException) and exc.failures:
            reason = _why(next(iter(exc.failures.values()))[0])
        else:
            reason = _why(exc)
        if dist.get_rank() == 0 and not existed and not (path / ".metadata").exists():
            shutil.rmtree(path, ignore_errors=True)  # this save's partial files, nothing else
        steps = completed_steps(self.folder)
        kept = f"the newest checkpoint, step-{steps[-1]}, is intact" if steps else "none saved"
        raise CheckpointWriteError(
            f"cannot write checkpoint {path.name} to {self.folder} ({_free_space(self.folder)} "
            f"free there): {reason}; {kept}: free space or choose another job.dump_folder, then "
            "run again to resume"
        ) from None

    def close(self) -> None:
        """Finish pending saves."""
        self.wait()

    def _purge(self) -> None:
        if self.keep_latest_k <= 0 or dist.get_rank() != 0:
            return
        for step in completed_steps(self.folder)[: -self.keep_latest_k]:
            shutil.rmtree(self.folder / f"step-{step}", ignore_errors=True)
