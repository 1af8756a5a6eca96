"""How ``new-model`` and ``regenerate`` write a package without losing anyone's files.

**The package lock.** While a command checks, stages and swaps in a package ``<parent>/<name>``
it holds an exclusive OS lock (``fcntl.flock``) on ``<parent>/.<name>.lock``, a file it creates
and removes again. A second run on the same package finds the lock held and stops at once with
one line, exit 2 (it does not wait). Runs that only read (``regenerate --check``, ``--dry-run``)
take it shared: they exclude writers, not each other. The kernel drops the lock however the
holder ends, so a lock file left by a killed run never blocks: the next run locks it, and
removes it when done. A run that acquires the lock checks that the file it locked is still the
one at the path (a holder removes the file while still holding it), so two runs never hold two
different files. Where ``fcntl`` does not exist (Windows, where the training runtime does not
run either) no lock is taken; the staging below still leaves the old package or the new one,
but two runs at once are not refused.

**Staging workspaces.** The new package is built in a hidden sibling folder,
``.<name>.<8 chars>`` (new-model) or ``.<name>.regenerate.<8 chars>`` (regenerate), that holds
:data:`MARKER` (written first) and the staged tree under ``package/``; it is swapped in at once
and the workspace removed. A run killed outright (SIGKILL, power loss) can leave a workspace
behind: the next run on the package removes the workspaces that match the name pattern, are
real folders, and hold the marker with this package's name, and only while it holds the
package's lock, so no live run is using them. Nothing else is ever removed.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from scaffolder.errors import ScaffoldError

try:
    import fcntl
except ImportError:  # Windows: no flock; see the module docstring
    fcntl = None  # type: ignore[assignment]

MARKER = ".model-scaffolder-staging"
STAGED = "package"  # the staged package tree inside a workspace
KINDS = ("new-model", "regenerate")
_SUFFIX = r"[a-z0-9_]{8}"  # what tempfile.mkdtemp appends


def lock_path(package: Path) -> Path:
    """The lock file of the package folder ``package``: ``<parent>/.<name>.lock``."""
    return package.parent / f".{package.name}.lock"


def _busy(package: Path) -> ScaffoldError:
    return ScaffoldError(
        f"package {package} is busy: another scaffold run is writing it (it holds "
        f"{lock_path(package)}); wait for that run to finish, then run this again"
    )


@contextmanager
def package_lock(package: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold the package's lock for the block; a ScaffoldError (exit 2) when another run holds it.

    ``package`` is the package folder (it need not exist yet); its parent folder must exist.
    ``shared``: the lock of a run that only reads the package (``regenerate --check`` and
    ``--dry-run``): readers exclude writers, not each other, and a reader goes on unlocked
    where it cannot create the lock file (a read-only checkout).
    """
    if fcntl is None:
        yield
        return
    path = lock_path(package)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if shared:
                yield  # nothing is written; the swap a writer makes is atomic anyway
                return
            raise ScaffoldError(
                f"cannot create the lock file {path} for {package}: {exc.strerror or exc}; "
                "check the folder's permissions (a lock file must not be a link)"
            ) from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(package) from None
        except OSError:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        os.close(fd)  # its holder removed it after we opened it: lock the file there now
    try:
        yield
    finally:
        _release(fd, path)


def _release(fd: int, path: Path) -> None:
    """Remove the lock file if no other run holds it (exclusively locked, so nobody can be
    using it), then let go. A run that opened it meanwhile sees it was removed and retries."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a reader's lock: others may share it
    except OSError:
        pass  # another reader still holds it: the last one out removes it
    else:
        if _same_file(fd, path):
            with suppress(OSError):
                path.unlink()
    os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` is (still) the file open as ``fd``."""
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _marker_text(kind: str, name: str) -> str:
    return (
        f"model-scaffolder {kind} staging folder for the package '{name}'; scaffold removes it "
        "if a run was interrupted\n"
    )


def _prefix(kind: str, name: str) -> str:
    return f".{name}.regenerate." if kind == "regenerate" else f".{name}."


def make_workspace(package: Path, kind: str) -> Path:
    """Create a staging workspace beside ``package`` holding the marker; returns its path.

    The staged tree goes to ``<workspace>/package`` (:data:`STAGED`); the caller removes the
    workspace when done.
    """
    workspace = Path(tempfile.mkdtemp(prefix=_prefix(kind, package.name), dir=package.parent))
    try:
        (workspace / MARKER).write_text(_marker_text(kind, package.name), encoding="utf-8")
    except BaseException:
        shutil.rmtree(workspace, ignore_errors=True)
        raise
    return workspace


def stale_workspaces(package: Path) -> list[Path]:
    """Workspaces an interrupted run on ``package`` left (see the module docstring).

    Call it only while holding :func:`package_lock` for ``package``.
    """
    found = []
    for kind in KINDS:
        pattern = re.compile(re.escape(_prefix(kind, package.name)) + _SUFFIX + r"\Z")
        expected = _marker_text(kind, package.name)
        for path in sorted(package.parent.glob(f"{_prefix(kind, package.name)}*")):
            if not pattern.match(path.name) or path.is_symlink() or not path.is_dir():
                continue
            marker = path / MARKER
            try:
                ours = not marker.is_symlink() and marker.read_text(encoding="utf-8") == expected
            except (OSError, UnicodeDecodeError):
                ours = False
            if ours:
                found.append(path)
    return found


def remove_stale_workspaces(package: Path) -> list[Path]:
    """Remove what :func:`stale_workspaces` finds; returns the folders removed."""
    removed = []
    for path in stale_workspaces(package):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    at_fdcwd, rename_exchange = -100, 2
    return (
        renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0
    )


def swap_in(current: Path, staged: Path) -> None:
    """Put ``staged`` at ``current``; afterwards ``staged`` holds the old tree (or is gone)."""
    if _exchange(current, staged):
        return
    previous = staged.with_name(staged.name + ".previous")
    os.replace(current, previous)
    try:
        os.replace(staged, current)
    except BaseException:
        os.replace(previous, current)
        raise
