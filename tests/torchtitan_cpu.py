"""torchtitan 0.3.0's trainer on CPU ranks with gloo, for tests only.

``torchrun ... torchtitan_cpu.py PLAN.json RESULT.json`` runs the plan's jobs one after another,
each as ``python -m torchtitan.train ARGV`` would (``--module PKG --config FN [--section.key
value ...]``); rank 0 writes ``{name: {"losses": {step: loss}, "grad_norms": {step: norm}}}``.

torchtitan assumes an accelerator; on a GPU nothing here is needed. Before the trainer is
imported this patches its CUDA assumptions:

- device detection: ``torchtitan.tools.utils`` picks ``cuda`` when no accelerator is found; it is
  set to ``cpu`` (so the process group uses gloo and the model is materialized on CPU);
- ``set_pg_timeouts`` after the first step calls ``barrier(device_ids=...)`` and
  ``set_timeout``, which gloo does not support: skipped;
- the device memory monitor reads CUDA device properties: it reports nothing on CPU;
- PREMUL_SUM: FSDP2 reduce-scatters with a pre-multiplied sum once a gradient divide factor is
  set, which gloo lacks; with torchtitan's factor of 1.0 it is a plain SUM;
- attention: the generated models use SDPA; torchtitan's flex attention (no CPU backward) is
  never built.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch


def patch_torchtitan_for_cpu() -> None:
    """Make torchtitan's trainer run on CPU ranks (import torchtitan's trainer after this)."""
    import torchtitan.tools.utils as tt_utils

    tt_utils.device_type = "cpu"
    tt_utils.device_module = torch.cpu
    import torchtitan.components.metrics as tt_metrics
    import torchtitan.distributed.utils as dist_utils

    dist_utils.device_type = "cpu"
    dist_utils.device_module = torch.cpu
    dist_utils.set_pg_timeouts = lambda *args, **kwargs: None
    tt_metrics.device_type = "cpu"
    tt_metrics.device_module = torch.cpu
    tt_metrics.DeviceMemoryMonitor = _NoDeviceMemory
    _sum_instead_of_premul_sum()


class _NoDeviceMemory:
    """Stands in for torchtitan's CUDA memory monitor."""

    device_name = "cpu"
    device_capacity_gib = 0.0

    def __init__(self, device: str = "cpu"):
        pass

    def get_peak_stats(self):
        from torchtitan.components.metrics import DeviceMemStats

        return DeviceMemStats(0, 0, 0, 0, 0, 0)

    def reset_peak_stats(self) -> None:
        pass


def _sum_instead_of_premul_sum() -> None:
    """FSDP2 reduce-scatters with ``PREMUL_SUM(1/factor)`` once a divide factor is set; gloo
    has no PREMUL_SUM. A factor of 1.0 (torchtitan's) is a plain SUM: force that."""
    from torch.distributed.fsdp._fully_shard import _fsdp_collectives

    original = _fsdp_collectives._get_gradient_divide_factors

    def divide_factors(
        reduce_scatter_group,
        all_reduce_group,
        reduce_dtype,
        device_type="",
        factor=None,
        force_sum_reduction_for_comms=False,
    ):
        return original(
            reduce_scatter_group,
            all_reduce_group,
            reduce_dtype,
            device_type,
            factor,
            force_sum_reduction_for_comms or factor == 1.0,
        )

    _fsdp_collectives._get_gradient_divide_factors = divide_factors


def run_plan(plan_path: str, result_path: str) -> None:
    """Train every job of the plan in turn (a fresh process group each); rank 0 writes results.

    The plan: ``{"runs": [{"name": str, "argv": [...]}]}``. Each job's process group meets on
    a port rank 0 picks just before the job and hands the other ranks through torchrun's store.
    """
    patch_torchtitan_for_cpu()
    import torch.distributed as dist
    from torchtitan.components.metrics import MetricsProcessor
    from torchtitan.train import main

    from runtime.distributed.utils import free_port

    record: dict[str, dict[int, float]] = {}
    original_log = MetricsProcessor.log

    def log(self, step, global_avg_loss, global_max_loss, grad_norm, *args, **kwargs):
        record["losses"][step] = float(global_avg_loss)
        record["grad_norms"][step] = float(grad_norm)
        return original_log(
            self, step, global_avg_loss, global_max_loss, grad_norm, *args, **kwargs
        )

    MetricsProcessor.log = log
    results = {}
    rank = int(os.environ.get("RANK", "0"))
    agent_store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False
    )
    for entry in json.loads(Path(plan_path).read_text())["runs"]:
        record.clear()
        record.update(losses={}, grad_norms={})
        # A fresh store for each job's process group (rank 0 hosts it on a port it picks now):
        # on torchrun's shared store a new group may meet keys of the previous one.
        key = f"titan_port/{entry['name']}"
        if rank == 0:
            agent_store.set(key, str(free_port()))
        os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "False"
        os.environ["MASTER_PORT"] = agent_store.get(key).decode()
        sys.argv = ["torchtitan.train", *entry["argv"]]
        main()  # destroys its process group at the end; the next job makes a new one
        results[entry["name"]] = {key: dict(values) for key, values in record.items()}
    if rank == 0:
        Path(result_path).write_text(json.dumps(results))
    assert not dist.is_initialized()


if __name__ == "__main__":
    run_plan(sys.argv[1], sys.argv[2])
