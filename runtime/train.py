"""Entry point: ``torchrun --nproc_per_node N -m runtime.train --job.config_file X [--a.b v ...]``.

Bad input (unknown config keys, impossible parallel degrees, a missing package) prints one line
to stderr and exits 2; a loss or gradient norm that stays non-finite stops the run with one line
and exit 1 (no checkpoint is written from it); so does a checkpoint the file system refuses
(a full disk), naming the folder.
"""

from __future__ import annotations

import sys

import torch.distributed as dist

from runtime.checkpoint import CheckpointWriteError
from runtime.config import ConfigError, JobConfig
from runtime.distributed.utils import exit_process
from runtime.trainer import NonFiniteTraining, Trainer, TrainResult


def run(job_config: JobConfig) -> TrainResult:
    """Train one job in the current process group (joined on first use)."""
    return Trainer(job_config).train()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, train, and return the exit code."""
    try:
        job_config = JobConfig.load(sys.argv[1:] if argv is None else argv)
        run(job_config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return ConfigError.exit_code
    except (NonFiniteTraining, CheckpointWriteError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    exit_process(main())
