"""``scaffold verify``: a generated package's own proof against transformers, run and tabulated.

The package's tests already compare it with transformers: logits, loss and gradients of a tiny
real model, the state dict adapter's round trips through ``save_pretrained`` files and an export
transformers loads, the full-size model's parameter count on the meta device, the ModelArgs <->
config.json mapping, and (MoE) the router's auxiliary loss and the grouped expert kernel. This
module runs those tests (``tests/test_args.py``, ``test_model.py``, ``test_state_dict_adapter.py``)
in a pytest subprocess, so nothing of the package is imported into the caller, and turns the
reports of :mod:`scaffolder.verify_plugin` into one :class:`Check` per test. The slower
multi-process and Megatron tests stay with ``pytest <package>``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scaffolder.errors import ScaffoldError
from scaffolder.verify_plugin import FD_VARIABLE

TEST_FILES = {  # the package's test file -> the section its checks are listed under
    "test_args.py": "config",
    "test_model.py": "model",
    "test_state_dict_adapter.py": "adapter",
}
OUTPUT_TAIL = 3000  # characters of pytest's own output kept for a run that reported nothing


@dataclass(frozen=True)
class Check:
    """One of the package's tests: where it is listed, what it checks, and how it went."""

    nodeid: str
    section: str
    name: str
    outcome: str  # passed | failed | error | skipped
    seconds: float
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("passed", "skipped")


@dataclass
class Verification:
    package: Path
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    returncode: int = 0
    output: str = ""  # pytest's own output (its tail), for a run that broke before any test

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and bool(self.checks) and not self.failed


@dataclass(frozen=True)
class Row:
    """A line of the summary table: one check, or several that passed together."""

    section: str
    name: str
    outcome: str
    seconds: float
    count: int = 1


FOLDED = {"config": "config.json <-> ModelArgs, train configs"}  # one row when all pass
OUTCOME_ORDER = ("error", "failed", "skipped", "passed")  # a row shows its worst outcome


def rows(checks: list[Check]) -> list[Row]:
    """The table for ``checks``: a parametrized test is one row, and a section of
    :data:`FOLDED` is one row when every check in it passed; failures always stand alone."""
    grouped: dict[tuple[str, str], list[Check]] = {}
    for check in checks:
        if check.section in FOLDED and all(
            other.ok for other in checks if other.section == check.section
        ):
            key = (check.section, FOLDED[check.section])
        elif check.ok:
            key = (check.section, check.name.partition(" [")[0])
        else:
            key = (check.section, check.name)
        grouped.setdefault(key, []).append(check)
    return [
        Row(
            section=section,
            name=name,
            outcome=min((c.outcome for c in group), key=_severity),
            seconds=sum(c.seconds for c in group),
            count=len(group),
        )
        for (section, name), group in grouped.items()
    ]


def _severity(outcome: str) -> int:
    return OUTCOME_ORDER.index(outcome) if outcome in OUTCOME_ORDER else 0


def describe(nodeid: str) -> tuple[str, str]:
    """``pkg/tests/test_model.py::test_logits_match_transformers`` -> ("model", "logits match
    transformers"); a parametrized id keeps its ``[...]``."""
    path, _, test = nodeid.partition("::")
    section = TEST_FILES.get(Path(path).name, Path(path).stem.removeprefix("test_"))
    name, bracket, params = test.partition("[")
    words = name.removeprefix("test_").replace("_", " ")
    return section, words + (f" [{params}" if bracket else "")


def package_folder(package: Path) -> Path:
    """The generated package at ``package``, or a one-line error saying what is missing."""
    if not package.is_dir():
        raise ScaffoldError(f"{package} is not a folder; pass a package folder scaffold wrote")
    tests = package / "tests"
    missing = [name for name in TEST_FILES if not (tests / name).is_file()]
    if not (package / "__init__.py").is_file() or len(missing) == len(TEST_FILES):
        raise ScaffoldError(
            f"{package} is not a generated package (no __init__.py or tests/test_model.py); "
            "pass the folder scaffold new-model wrote"
        )
    if not package.resolve().name.isidentifier():
        raise ScaffoldError(f"{package}: the folder name must be the package's import name")
    return package.resolve()


def pytest_command(package: Path) -> list[str]:
    files = [
        f"{package.name}/tests/{name}"
        for name in TEST_FILES
        if (package / "tests" / name).is_file()
    ]
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "scaffolder.verify_plugin",
        "-p",
        "no:cacheprovider",  # writes nothing into the user's folder
        "-qq",
        "--no-header",
        "-m",
        "not full_size",  # SCAFFOLD_FULL_SIZE tests build the real model; `pytest` runs them
        *files,
    ]


def verify(package: Path, on_start: Callable[[int, int, str], None] | None = None) -> Verification:
    """Run the package's comparisons with transformers; ``on_start(index, total, nodeid)`` is
    called as each test starts (1-based index)."""
    package = package_folder(package)
    if importlib.util.find_spec("pytest") is None:
        raise ScaffoldError(
            "scaffold verify runs the package's tests with pytest: pip install pytest"
        )
    read_end, write_end = os.pipe()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **{FD_VARIABLE: str(write_end)})
    env.setdefault("HF_HUB_OFFLINE", "1")
    result = Verification(package)
    started = time.perf_counter()
    total, index = 0, 0
    with tempfile.TemporaryFile("w+") as output:
        try:
            process = subprocess.Popen(
                pytest_command(package),
                cwd=package.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)  # the child holds the only write end: EOF when it exits
        with process, os.fdopen(read_end, encoding="utf-8") as events:
            for line in events:
                event = json.loads(line)
                kind = event["event"]
                if kind == "collected":
                    total = len(event["tests"])
                elif kind == "start":
                    index += 1
                    if on_start is not None:
                        on_start(index, total, event["nodeid"])
                elif kind in ("result", "collect_error"):
                    section, name = describe(event["nodeid"])
                    if kind == "collect_error":
                        name = "imports and collects"
                    result.checks.append(
                        Check(
                            nodeid=event["nodeid"],
                            section=section,
                            name=name,
                            outcome=event.get("outcome", "error"),
                            seconds=event.get("duration", 0.0),
                            message=event["message"],
                        )
                    )
        output.seek(0)
        result.output = output.read()[-OUTPUT_TAIL:]
    result.returncode = process.returncode
    result.seconds = time.perf_counter() - started
    return result
