"""A pytest plugin that reports each test of a generated package as one JSON line on stdout.

``scaffold verify`` runs the package's own tests in a pytest subprocess with ``-p
scaffolder.verify_plugin``; this module runs inside that subprocess only. It writes to the pipe
whose file descriptor is in :data:`FD_VARIABLE`, so nothing the tests or pytest print gets in
the way.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

FD_VARIABLE = "SCAFFOLD_VERIFY_FD"


def emit(event: str, **fields: Any) -> None:
    fd = os.environ.get(FD_VARIABLE)
    if fd is None:  # loaded by hand into a plain pytest run: nothing to report to
        return
    os.write(int(fd), (json.dumps({"event": event, **fields}) + "\n").encode())


def crash_line(report: pytest.BaseReport) -> str:
    """The one line that says what failed: the exception's message, else the last line."""
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and crash.message:
        return crash.message
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return str(longrepr[2])
    text = str(longrepr or "").strip()
    return text.splitlines()[-1] if text else ""


def pytest_collection_finish(session: pytest.Session) -> None:
    emit("collected", tests=[item.nodeid for item in session.items])


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        emit("collect_error", nodeid=report.nodeid, message=crash_line(report))


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    emit("start", nodeid=nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # One result per test: the call phase, or setup when it failed or skipped the test.
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = report.outcome if report.when == "call" or report.skipped else "error"
        message = "" if report.passed else crash_line(report)
        emit(
            "result",
            nodeid=report.nodeid,
            outcome=outcome,
            duration=round(report.duration, 3),
            message=message,
        )
    elif report.when == "teardown" and report.failed:
        emit(
            "result",
            nodeid=report.nodeid,
            outcome="error",
            duration=round(report.duration, 3),
            message=crash_line(report),
        )
