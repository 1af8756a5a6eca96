"""The built wheel works on its own: templates and bundled configs are package data.

The wheel is built from a copy of the sources and installed (``--no-deps``) into a fresh venv
whose dependencies come from this venv's site-packages through a ``.pth`` line: such a line only
extends ``sys.path``, so the ``.pth`` files in that folder, this venv's editable finder for
``scaffolder`` among them, are not run, and ``scaffolder`` is imported from the wheel. Its
``scaffold new-model`` runs outside the repository and must write what the checkout renders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from scaffolder.generate import generate
from tests.helpers import REPO_ROOT, TINYLLAMA_ID

PACKAGE = "tinyllama_1_1b_chat_v1_0"
SOURCES = ("pyproject.toml", "setup.py", "README.md", "scaffolder", "runtime", "templates")


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def build_wheel(tmp_path: Path) -> Path:
    """Build the wheel offline from a copy of the sources (the checkout gets no build/)."""
    source = tmp_path / "source"
    for name in SOURCES:
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(origin, source / name)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run(
        [
            *pip,
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(source),
        ]
    )
    (wheel,) = dist.glob("model_scaffolder-*.whl")
    return wheel


def fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new venv holding only the wheel; dependencies resolve to this venv's site-packages."""
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
        ).stdout.strip()
    )
    (site / "zz_dev_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
        + ["--ignore-installed", str(wheel)]  # never touches this venv's editable install
    )
    return venv


def test_wheel_install_renders_what_the_checkout_renders(tmp_path, monkeypatch):
    venv = fresh_venv(tmp_path, build_wheel(tmp_path))
    hf_cache, scaffold_cache, work = (tmp_path / name for name in ("hf", "cache", "work"))
    hf_cache.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HUGGINGFACE_HUB_CACHE")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(hf_cache),  # empty: the bundled config is the only source
        SCAFFOLD_CACHE_DIR=str(scaffold_cache),
        # ruff, which formats the render: a real venv has it beside its python; here it stays
        # in this venv's bin folder.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    python = str(venv / "bin" / "python")
    imported = run(
        [python, "-c", "import scaffolder, scaffolder.templates as t; print(scaffolder, t)"],
        cwd=work,
        env=env,
    ).stdout
    site = str(venv.resolve() / "lib")
    # <module 'scaffolder' from '<venv>/lib/python3.X/site-packages/scaffolder/__init__.py'>
    assert imported.count(f"from '{site}/") == 2, imported  # the wheel's files, not the repo's

    scaffold = str(venv / "bin" / "scaffold")
    result = run([scaffold, "new-model", TINYLLAMA_ID, "--no-verify"], cwd=work, env=env)

    assert "bundled snapshot" in result.stdout, result.stdout
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    reference = generate(TINYLLAMA_ID)
    assert reference.resolved.kind == "bundled"
    package = work / PACKAGE
    expected = {rel: text.encode() for rel, text in reference.files_with_record(package).items()}
    written = {
        path.relative_to(package).as_posix(): path.read_bytes()
        for path in package.rglob("*")
        if path.is_file()
    }
    assert sorted(written) == sorted(expected)
    assert [rel for rel in sorted(expected) if written[rel] != expected[rel]] == []
    assert any((scaffold_cache / "jinja").iterdir())  # the bytecode cache works from the wheel
