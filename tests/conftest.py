"""Shared pytest setup: offline hub, no Primus checkout, opt-in slow tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# With PRIMUS_PATH set the runtime reads that Primus checkout's presets; tests run without it
# (the ones that need a checkout write a fake one and pass it in ``environ``).
os.environ.pop("PRIMUS_PATH", None)

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
