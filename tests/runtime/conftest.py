"""Session fixtures of the runtime tests."""

from __future__ import annotations

import pytest
from runtime_helpers import PACKAGE_DIR, debug_argv, run_driver, write_hf_folder


@pytest.fixture(scope="session")
def baseline_losses(tmp_path_factory) -> dict[int, float]:
    """The one-rank reference loss curve of the shared setup."""
    tmp_path = tmp_path_factory.mktemp("baseline")
    results = run_driver(tmp_path, 1, {"base": debug_argv(tmp_path / "base")})
    return results["base"]["losses"]


@pytest.fixture(scope="session")
def hf_source(tmp_path_factory):
    """A transformers folder of the debug flavor (random weights, 18 shards and an index)."""
    return write_hf_folder(PACKAGE_DIR, tmp_path_factory.mktemp("hf_source") / "hf")
