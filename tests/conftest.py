"""Shared pytest setup: offline hub, no Primus checkout, opt-in slow tests."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# With PRIMUS_PATH set the runtime reads that Primus checkout's presets; tests run without it
# (the ones that need a checkout write a fake one and pass it in ``environ``).
os.environ.pop("PRIMUS_PATH", None)


def _share_the_cores_among_xdist_workers() -> None:
    """Under ``pytest -n N`` each worker (and every process it starts: the generated packages'
    pytest runs, ``scaffold verify``, single-rank trainers) gets ``cores // N`` intra-op threads.

    torch otherwise starts one OpenMP thread per core in each worker, so 2 workers on 2 cores
    run 4 spinning threads: tiny fp32 models then run many times slower (the deepseek group's
    generated tests: 151 s with 2 threads a worker against 31 s with 1, measured with another
    job on the cores). An OMP_NUM_THREADS set by the caller wins; serial runs keep torch's
    default.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers or "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // int(workers))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # imported before this file: the variable came too late
        sys.modules["torch"].set_num_threads(threads)


_share_the_cores_among_xdist_workers()

# Frozen packages from older generator versions (inputs of test_old_package.py): they hold
# their own tests/ folders, which are data here, not tests of this repository.
collect_ignore = ["fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run tests marked slow"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow; opt in with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
