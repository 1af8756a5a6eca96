"""What a training run prints: a line per setup phase before step 1, a closing block naming
every output, MFU never above 100% without a note, and none of the known-harmless warnings."""

from __future__ import annotations

import re
import subprocess
import sys

from runtime_helpers import PACKAGE_DIR, child_env

from runtime.metrics import mfu_and_peak


def test_two_rank_run_names_its_phases_and_outputs(tmp_path):
    dump = tmp_path / "run"
    env = child_env()
    env.pop("OMP_NUM_THREADS", None)  # scaffold train sets it: torchrun prints no banner
    command = [sys.executable, "-m", "scaffolder", "train", str(PACKAGE_DIR), "--nproc", "2"]
    command += ["--", "--job.dump_folder", str(dump), "--training.steps", "2"]
    command += ["--training.seq_len", "32", "--checkpoint.enable", "true"]
    command += ["--checkpoint.last_save_in_hf", "true", "--metrics.enable_tensorboard", "true"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    before_step_1 = output[: output.index("step     1")]
    phases = re.findall(r"^\[setup\] (\w+)", before_step_1, flags=re.M)
    assert phases == [
        "building",
        "parallelizing",
        "allocating",
        "data",
        "initializing",
        "measuring",
    ]
    assert "parallelizing over 2 ranks, FSDP 2" in before_step_1

    closing = output[output.index("done: 2 steps. Outputs:") :]
    for path in (
        dump / "metrics.jsonl",
        dump / "tb",
        dump / "checkpoint" / "step-2",
        dump / "hf",
    ):
        assert str(path) in closing and path.exists(), (path, closing)

    assert "OMP_NUM_THREADS" not in output
    assert "DTensor random operators" not in output and "manual_seed()" not in output
    for mfu in re.findall(r"mfu +([\d.]+)%", output):
        assert float(mfu) <= 100.0


def test_mfu_never_exceeds_one_and_the_peak_rises_to_what_a_step_did():
    assert mfu_and_peak(50.0, 100.0) == (0.5, 100.0, False)
    assert mfu_and_peak(128.0, 100.0) == (1.0, 128.0, True)
    mfu, peak, raised = mfu_and_peak(64.0, 128.0)  # the next step, against the raised peak
    assert (mfu, peak, raised) == (0.5, 128.0, False)
