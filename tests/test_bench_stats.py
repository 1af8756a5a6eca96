"""bench/: medians and ratios, interleaving order, the markdown table and the doc splice, a
failed child's text, the output-loss comparison on a tiny size, the step profile."""

from __future__ import annotations

import json

import pytest

from bench import output_loss, report
from bench.stats import (
    BEGIN,
    END,
    Summary,
    failure_text,
    interleave,
    markdown_table,
    speedup,
    splice,
)
from bench.step import Contender, profile_steps


def test_summary_is_median_min_max():
    summary = Summary.of([3.0, 1.0, 2.0, 10.0])
    assert (summary.n, summary.median, summary.min, summary.max) == (4, 2.5, 1.0, 10.0)
    with pytest.raises(ValueError):
        Summary.of([])


def test_speedup_is_median_over_median():
    slow, fast = Summary.of([2.0, 2.2, 9.0]), Summary.of([1.0, 1.1, 1.0])
    assert speedup(slow, fast) == pytest.approx(2.2)


def test_interleave_alternates_contenders():
    calls = []

    def contender(name):
        def run():
            calls.append(name)
            return float(len(calls))

        return run

    samples = interleave({"a": contender("a"), "b": contender("b")}, repeats=3)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert samples == {"a": [1.0, 3.0, 5.0], "b": [2.0, 4.0, 6.0]}


def test_markdown_table_checks_row_width():
    assert markdown_table(["x", "y"], [[1, "a"]]) == "| x | y |\n|---|---|\n| 1 | a |"
    with pytest.raises(ValueError):
        markdown_table(["x", "y"], [[1]])


def test_splice_replaces_only_the_generated_block():
    doc = f"# Benchmarks\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## Optimization log\nkept\n"
    updated = splice(doc, "new table")
    assert "old" not in updated and "new table" in updated
    assert updated.startswith("# Benchmarks\n\nintro\n\n") and updated.endswith("kept\n")
    assert splice(updated, "new table") == updated


def test_splice_appends_to_a_document_without_markers():
    assert splice("# Benchmarks\n", "t") == f"# Benchmarks\n\n{BEGIN}\nt\n{END}\n"
    with pytest.raises(ValueError):
        splice(f"{END}\n{BEGIN}", "t")


def _step(median_generated, median_hf, skipped=None):
    entry = {"n": 3, "min": 1.0, "max": 3.0, "mfu": 0.5}
    return {
        "contenders": {
            "generated": {**entry, "median": median_generated},
            "transformers": {**entry, "median": median_hf},
        },
        "skipped": skipped or {},
        "matmul_peak_flops": 1.8e11,
        "flops_per_step": 1.7e11,
        "loss_parity": {"generated": 10.0, "transformers": 10.0, "abs_diff": 0.0},
        "warmup_s": {"generated": 1.0},
        "machine": {"load_average": [0.5, 0.4, 0.3]},
    }


def test_step_table_reports_speedup_and_skipped_columns():
    text = report.step_section(_step(1.0, 1.5, {"torchtitan": "not importable"}), None)
    assert "| eager | transformers | 1.500 s |" in text and "1.50×" in text
    assert "| eager | torchtitan | skipped | not importable |" in text
    assert "torch.compile: not run." in text
    assert "eager (load average at start 0.5, 0.4, 0.3)" in text


def test_failure_text_keeps_the_first_error_and_the_end():
    noise = "".join(f"progress line {i}\n" for i in range(400))
    output = noise + "terminate called after throwing an instance of 'gloo::IoException'\n"
    output += noise + "torch.distributed.elastic.multiprocessing.errors.ChildFailedError\n"
    text = failure_text(output, limit=2000)
    assert len(text) <= 2010 and text.startswith("terminate called")
    assert text.endswith("ChildFailedError\n")
    assert failure_text("short") == "short"


def test_output_loss_contenders_agree_and_are_timed(tmp_path):
    out = tmp_path / "output_loss.json"
    output_loss.main(
        ["--vocab", "300", "--chunks", "10,12", "--tokens", "64", "--dim", "16"]
        + ["--repeats", "2", "--json", str(out)]
    )
    results = json.loads(out.read_text())["by_vocab"]["300"]
    assert sorted(results) == [
        "fused, 2^10 logits a chunk",
        "fused, 2^12 logits a chunk",
        "logits then loss",
    ]
    assert all(run["wall_s"] > 0 and run["cpu_s"] >= 0 for run in results.values())


def test_step_profile_counts_operators_per_step():
    import torch
    import torch.nn.functional as F

    def contender(hidden: int) -> Contender:
        model = torch.nn.Sequential(
            torch.nn.Linear(16, hidden, bias=False), torch.nn.Linear(hidden, 8, bias=False)
        )
        return Contender(model, F.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1))

    contenders = {"small": contender(4), "large": contender(256)}
    contenders["small"].cpu_seconds.append(1.0)
    tokens, labels = torch.randn(32, 16), torch.randint(0, 8, (32,))
    profiled = profile_steps(contenders, 2, tokens, labels, top=100)
    assert profiled["steps"] == 2
    assert 0 < profiled["total_ms"]["small"] and 0 < profiled["total_ms"]["large"]
    mm = next(entry for entry in profiled["ops"] if entry["op"] == "aten::mm")
    # Per step: two forward products, two weight gradients, one gradient of the hidden layer.
    assert mm["small"]["calls"] == mm["large"]["calls"] == 5
    assert contenders["small"].cpu_seconds == [1.0]  # profiled steps are not timed samples
