"""Fault tolerance: SIGKILL a rank mid-run; torchrun restarts the job, which resumes from the
last complete checkpoint and reproduces the uninterrupted loss curve."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
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


def test_a_non_finite_loss_stops_the_run_without_saving_it(tmp_path):
    """lr 1e30: the first update overflows the next step's gradients; the run stops with one
    line and exit 1, saves nothing from the bad step, and metrics.jsonl stays JSON."""
    import json

    from runtime_helpers import DEBUG_TOML, run_trainer

    dump = tmp_path / "diverged"
    result = run_trainer(
        "--job.config_file",
        str(DEBUG_TOML),
        "--job.dump_folder",
        str(dump),
        "--training.steps",
        "6",
        "--optimizer.lr",
        "1e30",
        "--checkpoint.enable",
        "--checkpoint.interval",
        "1",
    )
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not finite" in errors[0] and "stopped without saving" in errors[0]
    records = [json.loads(line) for line in (dump / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]["step"]
    assert records[-1]["grad_norm"] is None or records[-1]["loss"] is None
    saved = sorted(int(p.name.split("-")[1]) for p in (dump / "checkpoint").glob("step-*"))
    assert last not in saved and all(step < last for step in saved)


def test_two_trainings_cannot_share_a_dump_folder(tmp_path):
    """The second training into a folder a running one holds stops with one line, exit 2."""
    import fcntl

    from runtime_helpers import DEBUG_TOML, run_trainer

    dump = tmp_path / "shared"
    dump.mkdir()
    with (dump / ".lock").open("a") as held:  # what a running training's rank 0 holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_trainer(
            "--job.config_file",
            str(DEBUG_TOML),
            "--job.dump_folder",
            str(dump),
            "--training.steps",
            "1",
        )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "is in use by another training" in result.stderr
    assert not (dump / "metrics.jsonl").exists()


def test_a_corrupt_latest_checkpoint_falls_back_to_the_one_before(tmp_path):
    """The newest checkpoint's data file is truncated: the restarted run says so, resumes from
    the one before and finishes; with every checkpoint corrupt it stops with one line."""
    from runtime_helpers import DEBUG_TOML, run_trainer

    dump = tmp_path / "run"
    common = ("--job.config_file", str(DEBUG_TOML), "--job.dump_folder", str(dump))
    ckpt = ("--checkpoint.enable", "--checkpoint.interval", "2")
    first = run_trainer(*common, *ckpt, "--training.steps", "4")
    assert first.returncode == 0, first.stderr[-2000:]
    for data in (dump / "checkpoint" / "step-4").glob("*.distcp"):
        data.write_bytes(data.read_bytes()[:100])
    second = run_trainer(*common, *ckpt, "--training.steps", "6")
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "step-4 does not load" in second.stdout
    assert "resumed from checkpoint step 2" in second.stdout
    for step in ("step-2", "step-4", "step-6"):
        for data in (dump / "checkpoint" / step).glob("*.distcp"):
            data.write_bytes(b"")
    third = run_trainer(*common, *ckpt, "--training.steps", "8")
    assert third.returncode == 2
    errors = [line for line in third.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no checkpoint in" in errors[0]


class _Payload:
    """What a crafted checkpoint could hold: unpickling it would run a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    """Checkpoint metadata is read by an unpickler that allows only checkpoint classes: neither
    auto-resume nor initial_load_path runs what a crafted .metadata names."""
    import pickle

    from runtime_helpers import DEBUG_TOML, run_trainer

    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted"
    crafted.mkdir()
    (crafted / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    dump = tmp_path / "run"
    (dump / "checkpoint").mkdir(parents=True)
    (dump / "checkpoint" / "step-3").symlink_to(crafted, target_is_directory=True)
    common = ("--job.config_file", str(DEBUG_TOML), "--training.steps", "1")
    resumed = run_trainer(*common, "--job.dump_folder", str(dump), "--checkpoint.enable")
    loaded = run_trainer(
        *common,
        "--job.dump_folder",
        str(tmp_path / "other"),
        "--checkpoint.initial_load_path",
        str(crafted),
    )
    assert not marker.exists()
    for result, message in ((resumed, "no checkpoint in"), (loaded, "does not load")):
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0] and "refused" in errors[0]


def _files_of_at_most_a_mebibyte() -> None:
    """In the trainer's process: no file may grow past 1 MiB. A write beyond it fails with
    EFBIG (SIGXFSZ ignored, as it is inherited through exec), as a full disk fails one with
    ENOSPC: write(2) refuses the checkpoint's data file where DCP writes it (short writes, then
    an error), and no code of the trainer or torch is changed. Here torch's zip writer reports
    it as a RuntimeError; a plain OSError (as torch.save onto /dev/full gives) takes the same
    path, named with its errno."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))


def test_a_full_disk_while_checkpointing_names_the_folder_and_keeps_the_last_checkpoint(tmp_path):
    """A checkpoint the file system refuses (the data file, ~46 MB, cannot be written): one
    line naming the folder, exit 1, the partial step folder removed; the checkpoint before it
    still loads."""
    from runtime_helpers import DEBUG_TOML, run_trainer

    dump = tmp_path / "run"
    common = ("--job.config_file", str(DEBUG_TOML), "--job.dump_folder", str(dump))
    ckpt = ("--checkpoint.enable", "--checkpoint.interval", "2")
    first = run_trainer(*common, *ckpt, "--training.steps", "2")
    assert first.returncode == 0, first.stderr[-2000:]

    full = subprocess.run(
        [sys.executable, "-m", "runtime.train", *common, *ckpt, "--training.steps", "4"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_files_of_at_most_a_mebibyte,
    )
    assert full.returncode == 1, full.stdout[-2000:] + full.stderr[-3000:]
    errors = [line for line in full.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, full.stderr[-3000:]
    assert errors[0].startswith(f"error: cannot write checkpoint step-4 to {dump / 'checkpoint'}")
    assert "free there" in errors[0] and "step-2, is intact" in errors[0]
    assert sorted(p.name for p in (dump / "checkpoint").iterdir()) == ["step-2"]

    again = run_trainer(*common, *ckpt, "--training.steps", "3")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "resumed from checkpoint step 2" in again.stdout


def test_each_run_marks_where_it_starts_in_metrics(tmp_path):
    """A repeated run appends to metrics.jsonl: a run-start record (the step it starts after,
    the checkpoint it resumed) precedes each run's steps; the step readers skip it."""
    import json

    from runtime_helpers import DEBUG_TOML, run_trainer

    dump = tmp_path / "run"
    common = ("--job.config_file", str(DEBUG_TOML), "--job.dump_folder", str(dump))
    ckpt = ("--checkpoint.enable", "--checkpoint.interval", "1")
    for steps in ("1", "2"):
        result = run_trainer(*common, *ckpt, "--training.steps", steps)
        assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (dump / "metrics.jsonl").read_text().splitlines()]
    shape = [
        (r["event"], r["step"], r["resumed_from"]) if "event" in r else r["step"] for r in records
    ]
    assert shape == [("run_start", 0, None), 1, ("run_start", 1, 1), 2]
    assert all(isinstance(r["time"], str) for r in records if "event" in r)
    assert [r["step"] for r in read_metrics(dump)] == [1, 2]
