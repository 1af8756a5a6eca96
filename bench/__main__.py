"""``make bench``: run every comparison, one process each and one after another, then write the
generated block of docs/benchmarks.md (the hand-written text around it is kept).

``python -m bench [--quick] [--only NAME,...]`` (names: ``COMPARISONS`` below).
Raw results land in ``outputs/bench/*.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from bench import report
from bench.stats import splice

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "outputs" / "bench"
DOC = ROOT / "docs" / "benchmarks.md"

# name -> (module arguments, quick module arguments)
COMPARISONS = {
    "step_eager": (["bench.step", "--repeats", "7"], ["bench.step", "--repeats", "3"]),
    # One thread: each contender's CPU seconds per step barely move when other jobs share the
    # machine, so this run's CPU-time ratios are the robust ones.
    "step_eager_1t": (
        ["bench.step", "--threads", "1", "--repeats", "5"],
        ["bench.step", "--threads", "1", "--repeats", "2"],
    ),
    # The same run with glibc keeping freed blocks in the heap (no fresh mmap and page faults
    # for the large per-step buffers): what is left of the ratios without allocator effects.
    "step_eager_heap": (
        ["bench.step", "--repeats", "5", "--keep-freed-memory"],
        ["bench.step", "--repeats", "2", "--keep-freed-memory"],
    ),
    "step_compile": (
        ["bench.step", "--compile", "--repeats", "4"],
        ["bench.step", "--compile", "--repeats", "2"],
    ),
    "runtime": (
        ["bench.runtime_run", "--ranks", "1,2", "--steps", "12"],
        ["bench.runtime_run", "--ranks", "1,2", "--steps", "5"],
    ),
    "scaffold": (
        ["bench.scaffold_time", "--repeats", "5"],
        ["bench.scaffold_time", "--repeats", "2"],
    ),
    "memory": (["bench.fsdp_memory", "--ranks", "1,2,4"], ["bench.fsdp_memory", "--ranks", "1,2"]),
    "moe_step": (["bench.moe_step", "--repeats", "7"], ["bench.moe_step", "--repeats", "2"]),
    "step_memory": (
        ["bench.step_memory", "--steps", "4"],
        ["bench.step_memory", "--steps", "2", "--vocab", "32000"],
    ),
    "moe_step_1t": (
        ["bench.moe_step", "--threads", "1", "--repeats", "5"],
        ["bench.moe_step", "--threads", "1", "--repeats", "2"],
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks and update docs/benchmarks.md")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--only", default=",".join(COMPARISONS))
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument(
        "--render-only", action="store_true", help="run nothing; rewrite the doc from outputs/bench"
    )
    options = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict | None] = {}
    failed = []
    for name in [] if options.render_only else options.only.split(","):
        full, quick = COMPARISONS[name]
        path = OUT / f"{name}.json"
        path.unlink(missing_ok=True)
        command = [sys.executable, "-m", *(quick if options.quick else full), "--json", str(path)]
        print(f"[bench] {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0 or not path.exists():
            failed.append(name)
            print(
                f"[bench] {name} FAILED after {seconds:.0f} s:\n{proc.stderr[-3000:]}", flush=True
            )
            results[name] = None
            continue
        results[name] = json.loads(path.read_text())
        print(f"[bench] {name}: done in {seconds:.0f} s", flush=True)

    for name in COMPARISONS:  # comparisons not run this time keep their last results
        path = OUT / f"{name}.json"
        if name not in results and path.exists():
            results[name] = json.loads(path.read_text())
    if not any(results.values()):
        return 1
    date = datetime.date.today().isoformat()
    command = "make bench" + (" (--quick)" if options.quick else "")
    block = report.render(results, date, command)
    (OUT / "report.md").write_text(block + "\n")
    if not options.no_doc:
        existing = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
        DOC.write_text(splice(existing, block))
        print(f"[bench] wrote {DOC.relative_to(ROOT)}", flush=True)
    print(block)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
