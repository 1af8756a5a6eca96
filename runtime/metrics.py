"""Per-step metrics: console line, ``metrics.jsonl`` and TensorBoard (rank 0 writes).

``metrics.jsonl`` holds one JSON object a line: a step record (``step``, ``loss``, ...), or a
run-start record, ``{"event": "run_start", "step": S, "resumed_from": N | null, "time": ...}``,
that each run writes before its first step (S is the last step done before it: 0, or the
resumed checkpoint's N). Runs into the same dump folder append, so the run-start records mark
where each one begins. Step records have no ``event`` key; :func:`read_steps` reads only them.
"""

from __future__ import annotations

import json
import math
import resource
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

# Dense bf16 peak FLOP/s of known accelerators (spec sheets); others are measured.
_PEAK_BF16 = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "MI300X": 1307e12,
    "MI325X": 1307e12,
}


def measure_matmul_flops(device: torch.device, dtype: torch.dtype, size: int = 768) -> float:
    """The best FLOP/s of a ``size``-square matmul over several runs (a practical peak)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(12):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """Peak FLOP/s per device: spec value for known GPUs in bf16, else a measured matmul peak."""
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        name = torch.cuda.get_device_name(device)
        for key, value in _PEAK_BF16.items():
            if key in name:
                return value
    size = 8192 if device.type == "cuda" else 768
    return measure_matmul_flops(device, dtype, size)


def memory_gib(device: torch.device) -> float:
    """Peak memory of this rank in GiB: allocated on CUDA, resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


@dataclass
class StepMetrics:
    """One logged step."""

    step: int
    loss: float
    grad_norm: float
    lr: float
    tokens_per_sec: float
    mfu: float
    memory_gib: float
    step_time_s: float
    # Mixture-of-experts models only: the weighted load-balancing loss trained on besides
    # ``loss``, and the busiest expert's tokens over the mean (the largest over the layers).
    aux_loss: float | None = None
    moe_max_over_mean: float | None = None


RUN_START = "run_start"


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a ``metrics.jsonl`` file, in order (run starts and steps)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_steps(path: Path) -> list[dict[str, Any]]:
    """The step records of a ``metrics.jsonl`` file, in order (run-start records left out)."""
    return [record for record in read_records(path) if "event" not in record]


class MetricsLogger:
    """Writes each step to the console, ``<dump_folder>/metrics.jsonl`` and TensorBoard."""

    def __init__(self, job_config: Any, is_writer: bool):
        self.is_writer = is_writer
        self.log_freq = job_config.metrics.log_freq
        dump = Path(job_config.job.dump_folder)
        self.jsonl_path = dump / "metrics.jsonl"
        self._writer = None
        if is_writer:
            dump.mkdir(parents=True, exist_ok=True)
            if job_config.metrics.enable_tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(dump / job_config.metrics.save_tb_folder))

    def start(self, step: int, resumed_from: int | None) -> None:
        """Mark in ``metrics.jsonl`` that a run starts after ``step`` (see the module docstring)."""
        if not self.is_writer:
            return
        record = {
            "event": RUN_START,
            "step": step,
            "resumed_from": resumed_from,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        with self.jsonl_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def should_log(self, step: int, final: bool) -> bool:
        """Whether ``step`` is a logging step."""
        return final or step == 1 or step % self.log_freq == 0

    def log(self, metrics: StepMetrics) -> None:
        """Record one step (only the writer rank writes)."""
        if not self.is_writer:
            return
        print(
            f"step {metrics.step:5d}  loss {metrics.loss:8.4f}  grad_norm {metrics.grad_norm:7.3f}"
            f"  lr {metrics.lr:.2e}  tokens/s {metrics.tokens_per_sec:10.1f}"
            f"  mfu {100 * metrics.mfu:5.2f}%  memory {metrics.memory_gib:6.2f} GiB"
            + (f"  aux_loss {metrics.aux_loss:.4f}" if metrics.aux_loss is not None else "")
            + (
                f"  expert load max/mean {metrics.moe_max_over_mean:.2f}"
                if metrics.moe_max_over_mean is not None
                else ""
            ),
            flush=True,
        )
        with self.jsonl_path.open("a") as handle:
            # JSON has no NaN or Infinity: a non-finite value is written as null.
            record = {
                name: None if isinstance(value, float) and not math.isfinite(value) else value
                for name, value in asdict(metrics).items()
                if value is not None
            }
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for name, value in asdict(metrics).items():
                if name != "step" and value is not None:
                    self._writer.add_scalar(f"train/{name}", value, metrics.step)

    def close(self) -> None:
        """Flush TensorBoard."""
        if self._writer is not None:
            self._writer.close()
