"""The launch helpers' one retry: only after a rank died of SIGABRT, and from a clean slate."""

from __future__ import annotations

import pytest
from runtime_helpers import again_after_gloo_abort, debug_argv

TORCHRUN_REPORT = """[rank1]: terminate called after throwing an instance of 'gloo::IoException'
Root Cause (first observed failure):
[0]:
  rank      : 1 (local_rank: 1)
  exitcode  : -6 (pid: 31688)  (SIGABRT)
"""


def test_a_gloo_abort_clears_the_runs_outputs_for_one_more_run(tmp_path):
    runs = {name: debug_argv(tmp_path / name) for name in ("fsdp", "tp")}
    for name in runs:
        (tmp_path / name / "checkpoint" / "step-4").mkdir(parents=True)
    result = tmp_path / "plan_0.result.json"
    result.write_text("{}")
    other = tmp_path / "kept.txt"
    other.write_text("not a run's output")
    with pytest.warns(UserWarning, match="terminate called after throwing"):
        assert again_after_gloo_abort(["a first line\n" + TORCHRUN_REPORT], runs, result)
    assert not any((tmp_path / name).exists() for name in runs)
    assert not result.exists() and other.exists()


def test_other_failures_are_not_run_again(tmp_path):
    runs = {"fsdp": debug_argv(tmp_path / "fsdp")}
    (tmp_path / "fsdp").mkdir()
    python_error = TORCHRUN_REPORT.replace("-6", "1").replace("(SIGABRT)", "")
    assert not again_after_gloo_abort([python_error], runs, tmp_path / "result.json")
    assert (tmp_path / "fsdp").is_dir()
