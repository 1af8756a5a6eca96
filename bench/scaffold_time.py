"""Comparison 3: ``scaffold new-model`` wall time and the generated TinyLlama test suite's.

``new-model`` runs as a user runs it (the console script, offline, the bundled TinyLlama
snapshot), each run into a fresh folder, timed from outside with ``time.perf_counter`` around
the subprocess; ``/usr/bin/time -v`` adds the peak RSS when it is installed. Two settings,
interleaved: cold caches (an empty ``SCAFFOLD_CACHE_DIR`` per run, so the config goes through
transformers' config class and every template is compiled) and warm ones (filled by an earlier
run); see ``scaffolder/cache.py``.
The test suite is ``pytest -q <package>`` in the output folder, as ``new-model`` tells the user.

Run: ``python -m bench.scaffold_time --repeats 5 --json out.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import machine
from bench.runtime_run import PACKAGE, SOURCE
from bench.stats import Summary, emit, interleave

TIME_V = "/usr/bin/time"


def scaffold_executable() -> str:
    """The ``scaffold`` console script next to this interpreter."""
    candidate = Path(sys.executable).with_name("scaffold")
    return str(candidate) if candidate.exists() else "scaffold"


def timed(command: list[str], env: dict[str, str], cwd: Path | None = None) -> dict[str, Any]:
    """Wall seconds (and peak RSS in MiB via /usr/bin/time -v, when installed) of ``command``."""
    use_time_v = os.path.exists(TIME_V)
    full = [TIME_V, "-v", *command] if use_time_v else command
    start = time.perf_counter()
    proc = subprocess.run(full, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    result: dict[str, Any] = {"wall_s": wall, "stdout": proc.stdout}
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if match:
        result["max_rss_mib"] = int(match.group(1)) / 1024
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--test-repeats", type=int, default=1)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args(argv)

    scaffold = scaffold_executable()
    base_env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rss: dict[str, list[float]] = {"cold cache": [], "warm cache": []}
    with tempfile.TemporaryDirectory(prefix="bench-scaffold-") as tmp:
        root = Path(tmp)
        warm_cache = root / "warm-cache"
        counter = iter(range(10**6))

        def new_model(cache: Path | None, label: str) -> float:
            index = next(counter)
            out = root / f"out{index}"
            cache_dir = cache or root / f"cold-cache{index}"
            env = {**base_env, "SCAFFOLD_CACHE_DIR": str(cache_dir)}
            run = timed([scaffold, "new-model", SOURCE, "--output", str(out), "--no-verify"], env)
            if "max_rss_mib" in run:
                rss[label].append(run["max_rss_mib"])
            shutil.rmtree(out, ignore_errors=True)
            if cache is None:
                shutil.rmtree(cache_dir, ignore_errors=True)
            return run["wall_s"]

        new_model(warm_cache, "warm cache")  # fills the warm cache
        rss["warm cache"].clear()
        samples = interleave(
            {
                "cold cache": lambda: new_model(None, "cold cache"),
                "warm cache": lambda: new_model(warm_cache, "warm cache"),
            },
            options.repeats,
        )

        package_out = root / "tests"
        timed([scaffold, "new-model", SOURCE, "--output", str(package_out)], base_env)
        test_runs = []
        for _ in range(options.test_repeats):
            run = timed(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", PACKAGE],
                base_env,
                cwd=package_out,
            )
            summary_line = [line for line in run["stdout"].splitlines() if " passed" in line]
            test_runs.append({"wall_s": run["wall_s"], "pytest": summary_line[-1:] or ["?"]})

    results: dict[str, Any] = {
        "comparison": "scaffold",
        "machine": machine.describe(),
        "new_model_command": (
            f"scaffold new-model {SOURCE} --output OUT --no-verify (HF_HUB_OFFLINE=1)"
        ),
        "new_model": {name: Summary.of(times).as_dict() for name, times in samples.items()},
        "new_model_max_rss_mib": {name: max(v) for name, v in rss.items() if v},
        "tests_command": f"cd OUT && pytest -q {PACKAGE}",
        "tests": {
            **Summary.of([run["wall_s"] for run in test_runs]).as_dict(),
            "pytest": test_runs[-1]["pytest"][0],
        },
    }
    emit(results, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
