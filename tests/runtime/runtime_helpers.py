"""Helpers for the runtime tests: the generated TinyLlama package and torchrun launches.

``RUNTIME_TEST_PACKAGE`` points the tests at another generated package folder (default: the
committed TinyLlama example).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from bench.stats import failure_text
from runtime.metrics import read_steps

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(
    os.environ.get(
        "RUNTIME_TEST_PACKAGE", REPO_ROOT / "generated_examples" / "tinyllama_1_1b_chat_v1_0"
    )
)
DEBUG_TOML = PACKAGE_DIR / "train_configs" / "debug_model.toml"
DRIVER = Path(__file__).with_name("train_driver.py")
STEPS = 8


def debug_argv(dump_folder: Path, *extra: str) -> list[str]:
    """Trainer arguments of the shared equivalence setup: 8 steps, global batch 8, local 2,
    the output projection inside the loss.

    The debug flavor gets 2 kv heads so that tensor parallelism of degree 2 can split them.
    """
    return [
        "--job.config_file",
        str(DEBUG_TOML),
        "--model.args_overrides",
        "n_kv_heads=2",
        "--job.dump_folder",
        str(dump_folder),
        "--training.steps",
        str(STEPS),
        "--training.local_batch_size",
        "2",
        "--training.global_batch_size",
        "8",
        "--training.seq_len",
        "64",
        # At these sizes "auto" would compute full logits: every parallelism here checks the
        # fused output loss instead (test_runtime_equivalence compares it with "off").
        "--training.fused_output_loss",
        "on",
        *extra,
    ]


def child_env() -> dict[str, str]:
    """Environment for launched trainers: offline hub, the repo importable, quiet threads."""
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_trainer(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``python -m runtime.train *argv`` in one process; the caller checks the result."""
    return subprocess.run(
        [sys.executable, "-m", "runtime.train", *argv],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_metrics(dump: Path) -> list[dict]:
    """The step records of ``dump/metrics.jsonl`` in order (none while the file does not exist);
    run-start records are left out (:func:`runtime.metrics.read_steps`)."""
    metrics = dump / "metrics.jsonl"
    return read_steps(metrics) if metrics.is_file() else []


def torchrun_args(nproc: int, *, nnodes: int = 1, endpoint: str | None = None) -> list[str]:
    """``python -m torch.distributed.run``: one node ``--standalone`` (torchrun binds a free port
    itself, so no other test can take it first), or one of ``nnodes`` agents that are clients
    of the c10d store at ``endpoint`` (which the caller hosts)."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1:
        return [*command, "--standalone"]
    return [
        *command,
        f"--nnodes={nnodes}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={endpoint}",
        "--rdzv_conf=is_host=0",
    ]


def run_driver(tmp_path: Path, nproc: int, runs: dict[str, list[str]], timeout: int = 300):
    """Run ``runs`` ({name: argv}) one after another in one torchrun job of ``nproc`` ranks
    (once more after a gloo abort: :func:`again_after_gloo_abort`)."""
    plan, result = write_plan(tmp_path, runs)
    command = [*torchrun_args(nproc), str(DRIVER), str(plan), str(result)]

    def job() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, env=child_env(), capture_output=True, text=True, timeout=timeout
        )

    completed = job()
    if again_after_gloo_abort([completed.stdout + completed.stderr], runs, result):
        completed = job()
    assert completed.returncode == 0, failure_text(completed.stdout + completed.stderr, 8000)
    return read_result(result)


def again_after_gloo_abort(outputs: list[str], runs: dict[str, list[str]], result: Path) -> bool:
    """Whether a failed job should run once more: one of its ranks died of SIGABRT, as gloo's
    TCP transport now and then aborts a CPU rank mid-collective on a loaded machine (3 jobs in
    about 25 suite runs of sessions 6-7, never twice in a row; no rank printed a Python error).
    Warns with the first error lines and clears the runs' dump folders and the result file,
    so that the second run neither resumes from the first one's checkpoints nor reads its
    results. A deterministic failure fails the second run too."""
    aborted = [output for output in outputs if "(SIGABRT)" in output]
    if not aborted:
        return False
    warnings.warn(
        "a rank died of SIGABRT; running the job once more. The first run:\n"
        + failure_text(aborted[0], 4000),
        stacklevel=2,
    )
    for argv in runs.values():
        if "--job.dump_folder" in argv:
            shutil.rmtree(argv[argv.index("--job.dump_folder") + 1], ignore_errors=True)
    result.unlink(missing_ok=True)
    return True


def write_plan(tmp_path: Path, runs: dict[str, list[str]]) -> tuple[Path, Path]:
    """Write the driver plan for ``runs``; returns ``(plan path, result path)``."""
    plan = {"runs": [{"name": name, "argv": argv} for name, argv in runs.items()]}
    plan_path = tmp_path / f"plan_{len(list(tmp_path.glob('plan_*')))}.json"
    plan_path.write_text(json.dumps(plan))
    return plan_path, plan_path.with_suffix(".result.json")


def read_result(path: Path) -> dict[str, dict]:
    """The driver's results with integer step keys."""
    results = json.loads(path.read_text())
    for entry in results.values():
        entry["losses"] = {int(step): loss for step, loss in entry["losses"].items()}
    return results


def assert_same_losses(actual: dict[int, float], expected: dict[int, float], rel: float = 1e-4):
    """Every step's loss within ``rel`` relative of the reference."""
    assert sorted(actual) == sorted(expected)
    for step, loss in expected.items():
        assert actual[step] == pytest.approx(loss, rel=rel), f"step {step}"


def write_hf_folder(package_dir: Path, out: Path, *, seed: int = 0, **changes: Any) -> Path:
    """A transformers folder of the package's debug flavor (with ``changes`` to its args) with
    random weights, as ``save_pretrained`` writes it (several shards and an index)."""
    import dataclasses
    import importlib

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sys.path.insert(0, str(package_dir.parent))
    try:
        package = importlib.import_module(package_dir.name)
        args = dataclasses.replace(package.get_train_spec().model_args["debugmodel"], **changes)
    finally:
        sys.path.remove(str(package_dir.parent))
        # Forget the package: another test in this process may import one of the same name.
        for name in [n for n in sys.modules if n.split(".")[0] == package_dir.name]:
            del sys.modules[name]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**args.to_hf()))
    model.save_pretrained(out, max_shard_size="1MB")
    return out


def hf_import_argv(folder: Path) -> list[str]:
    """Trainer arguments that import ``folder``, take one step with learning rate 0 (the weights
    stay bit for bit) and export the weights again to ``<dump>/hf``."""
    return [
        "--checkpoint.initial_load_path",
        str(folder),
        "--checkpoint.initial_load_in_hf",
        "--checkpoint.last_save_in_hf",
        "--optimizer.lr",
        "0",
        "--training.steps",
        "1",
    ]


def assert_same_hf_tensors(folder: Path, reference: Path) -> None:
    """The two checkpoint folders hold the same keys with bit-identical tensors."""
    import torch

    from runtime.hf_io import load_hf_state_dict

    actual, expected = load_hf_state_dict(folder), load_hf_state_dict(reference)
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype and torch.equal(actual[key], value), key


def transformers_first_loss(hf_model: Any, argv: list[str], vocab_size: int) -> float:
    """transformers' mean cross entropy of ``hf_model`` on the first batch the trainer reads
    with ``argv`` on one rank: the first loss a run that starts from its weights must log."""
    import torch
    import torch.nn.functional as F

    from runtime.components import build_dataloader
    from runtime.config import JobConfig

    config = JobConfig.load(argv)
    inputs, labels = build_dataloader(1, 0, None, config, vocab_size=vocab_size).next_batch()
    with torch.no_grad():
        logits = hf_model.eval()(inputs).logits
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten()).item()
