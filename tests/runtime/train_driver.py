"""Runs several training configurations in one process group (launched by torchrun in tests).

Usage: ``torchrun ... train_driver.py PLAN.json RESULT.json`` with a plan
``{"runs": [{"name": str, "argv": [...]}]}`` of ``runtime.train`` argument lists. Rank 0 writes
``{name: {"losses": {step: loss}, "resumed_from": step | None, "hf_folder": str | None}}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from runtime.config import JobConfig
from runtime.distributed.utils import exit_process
from runtime.train import run


def main(plan_path: str, result_path: str) -> None:
    """Train every run of the plan in turn, then write the results."""
    plan = json.loads(Path(plan_path).read_text())
    results = {}
    for entry in plan["runs"]:
        result = run(JobConfig.load(entry["argv"]))
        results[entry["name"]] = {
            "losses": result.losses,
            "resumed_from": result.resumed_from,
            "hf_folder": str(result.hf_folder) if result.hf_folder else None,
        }
    if dist.get_rank() == 0:
        Path(result_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    exit_process(0)
