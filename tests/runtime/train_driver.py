"""Runs several training configurations in one process group (launched by torchrun in tests).

Usage: ``torchrun ... train_driver.py PLAN.json RESULT.json``. The plan is ``{"package_dir":
str, "flavor_overrides": {field: value}, "runs": [{"name": str, "argv": [...]}]}``;
``flavor_overrides`` register a ``debugmodel_test`` flavor (the debug flavor with those fields
changed, e.g. more kv heads so tensor parallelism can split them). Rank 0 writes
``{name: {step: loss}}`` to RESULT.json.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch.distributed as dist

from runtime.config import JobConfig
from runtime.package import import_model_package
from runtime.train import run


def register_test_flavor(package_dir: str, overrides: dict) -> None:
    """Add ``debugmodel_test`` = ``debugmodel`` with ``overrides`` to the package's flavors."""
    config = JobConfig.from_dict({"model": {"package_dir": package_dir}})
    module = import_model_package(config)
    flavors = module.get_train_spec().model_args
    flavors["debugmodel_test"] = dataclasses.replace(flavors["debugmodel"], **overrides)


def main(plan_path: str, result_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    register_test_flavor(plan["package_dir"], plan.get("flavor_overrides", {}))
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
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
