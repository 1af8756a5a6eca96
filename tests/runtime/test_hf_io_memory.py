"""Sharded HF import and export: the per-rank peak memory falls with the rank count.

``bench.hf_io_memory`` on a 170 MiB model (the TinyLlama package with smaller dimensions and
its full 32000-token vocabulary): a random transformers folder, then import and export on one
rank and on four (FSDP). Each phase's growth of the peak RSS over the RSS before it is compared;
the bounds are loose (a quarter of the tensors plus one tensor in flight would give about 0.3
and 0.45) so that allocator noise cannot flip them.
"""

from __future__ import annotations

import json

from runtime_helpers import again_after_gloo_abort, child_env

from bench import hf_io_memory

DIMS = "dim=512,n_layers=4,n_heads=8,n_kv_heads=4,ffn_dim=1408"


def test_per_rank_import_and_export_peaks_fall_with_the_rank_count(tmp_path, monkeypatch):
    for key, value in child_env().items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "memory.json"

    def measure() -> dict:
        hf_io_memory.main(["--ranks", "1,4", "--overrides", DIMS, "--json", str(out)])
        return json.loads(out.read_text())["runs"]

    runs = measure()
    errors = [run["error"] for run in runs.values() if "error" in run]
    if errors and again_after_gloo_abort(errors, {}, out):
        runs = measure()
    assert all("error" not in run for run in runs.values()), runs
    one, four = runs["1"]["ranks"][0], runs["4"]["ranks"]
    assert one["import_growth_mib"] > 150  # the model's 170 MiB, filled by the import
    assert max(rank["import_growth_mib"] for rank in four) < 0.6 * one["import_growth_mib"]
    assert max(rank["export_growth_mib"] for rank in four) < 0.75 * one["export_growth_mib"]
