"""Fault tolerance: SIGKILL a rank mid-run; torchrun restarts the job, which resumes from the
last complete checkpoint and reproduces the uninterrupted loss curve."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from runtime_helpers import (
    STEPS,
    assert_same_losses,
    child_env,
    debug_argv,
    read_metrics,
    torchrun_args,
)


def _wait_for_step(dump: Path, step: int, job: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(record["step"] >= step for record in read_metrics(dump)):
            return
        assert job.poll() is None, "the job ended before the fault was injected"
        time.sleep(0.02)
    raise AssertionError(f"step {step} was not logged within {timeout}s")


def _trainer_pids(agent_pid: int) -> list[int]:
    """Worker processes torchrun started (its children running runtime.train)."""
    pids = []
    for task in Path(f"/proc/{agent_pid}/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    return [pid for pid in pids if b"runtime.train" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_sigkill_a_rank_then_resume_from_the_last_checkpoint(tmp_path, baseline_losses):
    dump = tmp_path / "run"
    argv = debug_argv(dump, "--checkpoint.enable", "--checkpoint.interval", "2")
    argv += ["--checkpoint.keep_latest_k", "2"]
    command = [*torchrun_args(2), "--max_restarts=1", "-m", "runtime.train", *argv]
    job = subprocess.Popen(
        command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for_step(dump, 3, job)
        workers = _trainer_pids(job.pid)
        assert len(workers) == 2
        os.kill(workers[-1], signal.SIGKILL)
        output = job.communicate(timeout=300)[0]
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, output[-5000:]
    resumed = re.search(r"resumed from checkpoint step (\d+)", output)
    assert resumed, output[-3000:]
    assert int(resumed.group(1)) in (2, 4, 6)
    # Records are appended; the last one of each step after the resume is the restarted run's.
    records = read_metrics(dump)
    last_loss = {record["step"]: record["loss"] for record in records}
    assert sorted(last_loss) == list(range(1, STEPS + 1))
    assert_same_losses(last_loss, baseline_losses)
    kept = sorted(path.name for path in (dump / "checkpoint").iterdir())
    assert kept == [f"step-{STEPS - 2}", f"step-{STEPS}"]
