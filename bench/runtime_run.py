"""Comparison 2: the runtime's tokens/s and MFU for the TinyLlama debug flavor on 1 and 2 ranks.

Renders TinyLlama/TinyLlama-1.1B-Chat-v1.0 (the bundled config snapshot, offline) and trains
its ``debug_model.toml`` under torchrun with the exact command ``scaffold train`` builds
(``runtime.launch``), gloo on CPU, FSDP over the ranks. Figures are the median over the logged
steps after the first ``--skip`` (warm-up) steps, as the trainer logs them to metrics.jsonl:
tokens/s for the whole job, MFU against the trainer's own measured matmul peak per rank.

Run: ``python -m bench.runtime_run --ranks 1,2 --steps 12 --json out.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import machine
from bench.stats import emit
from bench.step import new_model
from runtime.metrics import read_steps

SOURCE = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
PACKAGE = "tinyllama_1_1b_chat_v1_0"


def render_tinyllama(folder: Path) -> Path:
    """``scaffold new-model`` TinyLlama into ``folder`` (offline: the bundled snapshot)."""
    new_model(SOURCE, folder, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return folder / PACKAGE


def train_command(package_dir: Path, ranks: int, steps: int, dump: Path, extra: list[str]) -> list:
    """The torchrun command ``scaffold train`` would run for the debug config."""
    from runtime.launch import build_argv, torchrun_command

    overrides = ["--training.steps", str(steps), "--job.dump_folder", str(dump)]
    overrides += ["--metrics.log_freq", "1", *extra]
    return torchrun_command(build_argv(str(package_dir), None, overrides), ranks)


def read_metrics(path: Path, skip: int) -> dict[str, Any]:
    """Medians of the logged steps after the first ``skip`` ones."""
    rows = read_steps(path)  # run-start records left out
    kept = [row for row in rows if row["step"] > skip] or rows
    return {
        "steps_logged": len(rows),
        "steps_used": len(kept),
        "tokens_per_sec": statistics.median(row["tokens_per_sec"] for row in kept),
        "tokens_per_sec_min": min(row["tokens_per_sec"] for row in kept),
        "tokens_per_sec_max": max(row["tokens_per_sec"] for row in kept),
        "mfu": statistics.median(row["mfu"] for row in kept),
        "step_time_s": statistics.median(row["step_time_s"] for row in kept),
        "memory_gib_rank0": max(row["memory_gib"] for row in rows),
        "final_loss": rows[-1]["loss"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip", type=int, default=2, help="warm-up steps left out")
    parser.add_argument("--json", type=Path)
    parser.add_argument("extra", nargs="*", help="more --section.key value overrides")
    options = parser.parse_args(argv)

    results: dict[str, Any] = {"comparison": "runtime", "machine": machine.describe(), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        package_dir = render_tinyllama(Path(tmp))
        for ranks in [int(r) for r in options.ranks.split(",")]:
            dump = Path(tmp) / f"out{ranks}"
            command = train_command(package_dir, ranks, options.steps, dump, options.extra)
            start = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - start
            run: dict[str, Any] = {
                "command": " ".join(
                    ["torchrun", *command[3:]]
                    if command[1:3] == ["-m", "torch.distributed.run"]
                    else command
                ).replace(tmp, "$TMP"),
                "wall_s": wall,
                "returncode": proc.returncode,
            }
            if proc.returncode != 0:
                run["error"] = (proc.stderr or proc.stdout)[-2000:]
            else:
                run.update(read_metrics(dump / "metrics.jsonl", options.skip))
            results["runs"][str(ranks)] = run
    emit(results, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
