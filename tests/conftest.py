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


# Tests that take long (node-id prefix -> rough seconds a test under ``pytest -n 2`` on 2 cores,
# from --durations runs of 2026-11-27). Under xdist they start first and longest first: with
# --dist worksteal a worker that runs out takes queued tests from the other's end, so the run ends
# on short tests instead of one worker finishing a long one started late while the other idles.
# Only the order depends on these numbers; a missing or stale entry costs time, never a result.
# Tests that share a module fixture (``rendered``, ``packages``, ``verified``) keep one number so
# that they stay together and set it up once.
LONG_TESTS = {
    "tests/runtime/test_runtime_gpt_oss_deepseek.py::test_expert_tensor": 45,
    "tests/test_generated_packages.py::test_generated": 40,
    "tests/test_generated_packages.py::test_only_the_features": 40,
    "tests/test_torchtitan.py": 40,
    "tests/runtime/test_runtime_moe.py::test_expert_parallel": 38,
    "tests/test_generated_packages.py::test_family_packages[moe]": 35,
    "tests/runtime/test_runtime_equivalence.py::test_activation_checkpointing": 30,
    "tests/test_generated_packages.py::test_family_packages[qwen3_phi3]": 28,
    "tests/runtime/test_runtime_equivalence.py::test_two_nodes": 27,
    "tests/test_generated_packages.py::test_family_packages[olmo2_granite]": 26,
    "tests/runtime/test_runtime_fault.py::test_a_corrupt_latest": 26,
    "tests/test_generated_packages.py::test_family_packages[deepseek]": 25,
    "tests/runtime/test_runtime_equivalence.py::test_four_ranks": 25,
    "tests/runtime/test_hf_io_memory.py": 24,
    "tests/test_generated_packages.py::test_family_packages": 20,
    "tests/runtime/test_runtime_fault.py::test_sigkill": 20,
    "tests/runtime/test_runtime_moe.py::test_losses_agree": 19,
    "tests/test_regenerate.py::test_longer_context": 16,
    "tests/test_assets.py::test_assets_then_continued_pretraining": 16,
    "tests/runtime/test_primus_smoke.py": 14,
    "tests/runtime/test_runtime_fault.py::test_a_full_disk": 14,
    "tests/runtime/test_runtime_gpt_oss_deepseek.py::test_mxfp4": 13,
    "tests/test_verify.py::test_new_model_verifies": 12,
    "tests/test_verify.py::test_verify_fails_on_a_broken": 12,
    "tests/runtime/test_runtime_families.py": 10,
    "tests/runtime/test_runtime_fault.py::test_each_run_marks": 10,
    "tests/runtime/test_runtime_console.py::test_two_rank": 9,
    "tests/runtime/test_runtime_fault.py::test_a_crafted": 8,
    "tests/runtime/test_loss.py::test_vocab_parallel_loss": 7,
    "tests/runtime/test_runtime_cli.py::test_launcher_trains": 7,
    "tests/runtime/test_runtime_moe.py::test_import_of": 6,
    "tests/runtime/test_runtime_hf.py": 6,
    "tests/test_regenerate.py::test_tie_word_embeddings_flip": 6,
}


def _expected_seconds(item: pytest.Item) -> int:
    """The LONG_TESTS entry of the longest prefix of ``item``'s node id (0 if none)."""
    prefixes = [prefix for prefix in LONG_TESTS if item.nodeid.startswith(prefix)]
    return LONG_TESTS[max(prefixes, key=len)] if prefixes else 0


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``pytest -n N`` distributes with worksteal (see LONG_TESTS) unless ``--dist`` is given."""
    if getattr(config.option, "numprocesses", None) and config.option.dist == "no":
        config.option.dist = "worksteal"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Every worker sorts its (identical) collection alike, as xdist requires.
        items.sort(key=lambda item: -_expected_seconds(item))
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow; opt in with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
