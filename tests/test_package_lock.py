"""`scaffold new-model` with another run on the same package (issue 14, items 5 and 7): the
package lock, and the staging folders a killed run leaves.

The other run is a real process: one that holds the lock while it stages a package (paused
until the test lets it go on), one killed by SIGKILL holding it, and one killed mid-staging.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from scaffolder.staging import MARKER
from tests.helpers import REPO_ROOT, TINYLLAMA_ID, run_cli

# A second writer of out/pk: write_package with two files, pausing (stdout "staging", then a
# line on stdin) when it writes the first one, i.e. after its checks and inside its staging.
PAUSED_WRITER = """
import sys
from pathlib import Path
from scaffolder.render import write_package

write_text = Path.write_text

def paused(self, *args, **kwargs):
    if self.name == "first.txt":
        print("staging", flush=True)
        sys.stdin.readline()
    return write_text(self, *args, **kwargs)

Path.write_text = paused
write_package({"first.txt": "A\\n", "second.txt": "A\\n"}, Path(sys.argv[1]))
print("done", flush=True)
"""

# A new-model run killed by SIGKILL once it has staged a few files.
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from scaffolder.cli import app

write_text, written = Path.write_text, []

def killed(self, *args, **kwargs):
    written.append(self)
    if len(written) == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return write_text(self, *args, **kwargs)

Path.write_text = killed
app(["new-model", sys.argv[1], "--name", "pk", "--output", sys.argv[2]])
"""


def python(script: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args], env=env, text=True, **kwargs
    )


def new_model(out: Path, *extra: str):
    return run_cli("new-model", TINYLLAMA_ID, "--name", "pk", "--output", str(out), *extra)


def test_a_second_run_while_one_writes_the_package_is_refused_and_deletes_nothing(tmp_path):
    """Used to: the second run wrote out/pk and exited 0, then the first replaced it (both
    exit 0, one package silently gone). Now the second says the package is busy, exit 2."""
    out = tmp_path / "out"
    out.mkdir()
    first = python(PAUSED_WRITER, str(out / "pk"), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert first.stdout.readline().strip() == "staging"
        second = new_model(out)
        staged = [p for p in out.iterdir() if p.name.startswith(".pk.") and p.is_dir()]
        marked = [(p / MARKER).is_file() for p in staged]  # the live run's staging: kept
        first.stdin.write("\n")
        first.stdin.flush()
        assert first.wait(timeout=60) == 0 and first.stdout.read().strip() == "done"
    finally:
        if first.poll() is None:
            first.kill()
    assert second.exit_code == 2, second.output
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is busy" in lines[0] and "Traceback" not in second.output
    assert marked == [True]
    assert sorted(p.name for p in (out / "pk").iterdir()) == ["first.txt", "second.txt"]
    assert sorted(p.name for p in out.iterdir()) == ["pk"]  # the lock file is gone too


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
    """The kernel drops a killed holder's lock: the next run takes it and removes the file."""
    out = tmp_path / "out"
    out.mkdir()
    holder = python(
        """
        import sys, time
        from pathlib import Path
        from scaffolder.staging import package_lock

        with package_lock(Path(sys.argv[1])):
            print("locked", flush=True)
            time.sleep(120)
        """,
        str(out / "pk"),
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert "is busy" in new_model(out).stderr
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert (out / ".pk.lock").is_file()  # left behind by the killed run
    result = new_model(out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["pk"]


def test_staging_left_by_a_killed_run_is_removed_and_nothing_else(tmp_path):
    """A run SIGKILLed mid-staging leaves its hidden staging folder; the next run on the package
    removes it (the name pattern and the marker inside) and leaves look-alikes alone."""
    out = tmp_path / "out"
    killed = python(KILLED_WRITER, TINYLLAMA_ID, str(out))
    assert killed.wait(timeout=120) == -signal.SIGKILL
    left = [p for p in out.iterdir() if p.name != ".pk.lock"]
    assert len(left) == 1 and left[0].name.startswith(".pk.")
    look_alikes = {
        ".pk.abcd1234": "not the tool's marker\n",  # the pattern, a marker of other text
        ".pk.regenerate.abcd1234": None,  # the pattern, no marker
        ".pk.notes": None,  # not the pattern
        ".pkg.abcd1234": None,  # another package's name
    }
    for name, marker in look_alikes.items():
        (out / name).mkdir()
        (out / name / "mine.txt").write_text("keep")
        if marker is not None:
            (out / name / MARKER).write_text(marker)
    (out / ".pk.zzzz9999").symlink_to(left[0])  # a link to a marked folder: not followed

    result = new_model(out)

    assert result.exit_code == 0, result.output
    assert f"removed  {left[0]}, left by an interrupted scaffold run" in result.stdout
    assert not left[0].exists()
    for name in look_alikes:
        assert (out / name / "mine.txt").read_text() == "keep"
    assert (out / ".pk.zzzz9999").is_symlink()
    assert json.loads((out / "pk" / ".scaffold" / "generator.json").read_text())["package_name"]
