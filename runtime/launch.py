"""Launch a training job under torchrun: ``run_train(package, nproc, config, overrides)``.

The config is validated in this process first (against ``nproc`` ranks), so bad input gets one
line and exit code 2 before any worker starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from runtime.config import ConfigError, JobConfig

DEFAULT_CONFIG = "debug_model.toml"


def resolve_config_file(package_dir: Path | None, config: str | None) -> str:
    """A config path: as given if it exists, else ``<package>/train_configs/<config>[.toml]``."""
    if config and Path(config).is_file():
        return str(Path(config).resolve())
    if package_dir is None:
        raise ConfigError(f"config file not found: {config}" if config else "no config given")
    name = config or DEFAULT_CONFIG
    for candidate in (name, f"{name}.toml"):
        path = package_dir / "train_configs" / candidate
        if path.is_file():
            return str(path)
    known = sorted(p.name for p in (package_dir / "train_configs").glob("*.toml"))
    raise ConfigError(f"config '{name}' not found in {package_dir}/train_configs ({known})")


def _package_dir(package: str) -> Path | None:
    path = Path(package)
    if path.is_dir():
        if not (path / "__init__.py").is_file():
            raise ConfigError(f"{package} is not a Python package (no __init__.py)")
        return path.resolve()
    return None


def build_argv(package: str, config: str | None, overrides: Sequence[str]) -> list[str]:
    """The ``runtime.train`` arguments for a package folder or import name."""
    package_dir = _package_dir(package)
    if package_dir is None and (os.sep in package or package.startswith(".")):
        raise ConfigError(f"package folder not found: {package}")
    if package_dir is None and not (config and Path(config).is_file()):
        raise ConfigError(
            f"package {package!r} is not a folder here; give the package folder, or its import "
            "name with --config <file>"
        )
    argv = ["--job.config_file", resolve_config_file(package_dir, config)]
    if package_dir is not None:
        argv += ["--model.package_dir", str(package_dir)]
    else:
        argv += ["--model.name", package]
    return argv + list(overrides)


def torchrun_command(
    argv: Sequence[str], nproc: int, nnodes: int = 1, rdzv_endpoint: str | None = None
) -> list[str]:
    """``python -m torch.distributed.run ... -m runtime.train ARGV`` (standalone on one node)."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1 and rdzv_endpoint is None:
        command.append("--standalone")
    else:
        command += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}"]
    return [*command, "-m", "runtime.train", *argv]


def validate(argv: Sequence[str], world_size: int) -> JobConfig:
    """Load the config and check it against the package and ``world_size`` (no training)."""
    from runtime.trainer import Trainer

    job_config = JobConfig.load(list(argv))
    Trainer(job_config, world_size=world_size)
    return job_config


def run_train(
    package: str,
    nproc: int = 1,
    config: str | None = None,
    overrides: Sequence[str] = (),
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
) -> int:
    """Train ``package`` (a package folder or import name) on ``nproc`` local ranks.

    ``config`` is a TOML/YAML path or a name in ``<package>/train_configs`` (default
    ``debug_model.toml``); ``overrides`` are ``--section.key value`` strings. Returns the exit
    code: 0 on success, 2 for bad input (printed as one line on stderr), else torchrun's.
    """
    try:
        if nproc < 1:
            raise ConfigError(f"nproc must be >= 1, got {nproc}")
        if nnodes < 1:
            raise ConfigError(f"nnodes must be >= 1, got {nnodes}")
        if nnodes > 1 and not rdzv_endpoint:
            raise ConfigError(
                f"--nnodes {nnodes} needs --rdzv-endpoint host:port, the rendezvous every node "
                "joins (run the same command on each node)"
            )
        argv = build_argv(package, config, overrides)
        validate(argv, world_size=nproc * nnodes)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return ConfigError.exit_code
    command = torchrun_command(argv, nproc, nnodes, rdzv_endpoint)
    return subprocess.call(command, env=dict(os.environ))


# ----- torchtitan engine -------------------------------------------------------------------------

TORCHTITAN_REGISTRY = "config_registry.py"


def torchtitan_argv(package: str, config: str | None, overrides: Sequence[str]) -> list[str]:
    """``torchtitan.train`` arguments for a package folder: ``--module NAME --config FN ...``.

    ``config`` names one of the package's ``train_configs/*.toml`` (with or without ``.toml``,
    or its path); ``config_registry.py`` has a function of the same name.
    """
    package_dir = _package_dir(package)
    if package_dir is None:
        raise ConfigError(f"package folder not found: {package}")
    registry = package_dir / TORCHTITAN_REGISTRY
    if not registry.is_file():
        raise ConfigError(
            f"{package_dir.name} has no {TORCHTITAN_REGISTRY} (made by an older scaffold); "
            f"run `scaffold regenerate {package}`"
        )
    name = Path(config).stem if config else Path(DEFAULT_CONFIG).stem
    functions = _top_level_functions(registry)
    if name not in functions:
        raise ConfigError(
            f"config '{name}' not found in {registry} (torchtitan configs: "
            f"{sorted(f for f in functions if f != 'model_registry' and f != 'parallelize')})"
        )
    return ["--module", package_dir.name, "--config", name, *overrides]


def _top_level_functions(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def run_torchtitan(
    package: str,
    nproc: int = 1,
    config: str | None = None,
    overrides: Sequence[str] = (),
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
) -> int:
    """Train a package folder with torchtitan's own trainer (``-m torchtitan.train``).

    Needs torchtitan 0.3.0 (``pip install 'model-scaffolder[torchtitan]'``) and, as torchtitan
    does, accelerators. ``overrides`` are torchtitan's ``--section.key value`` options. Returns
    the exit code as :func:`run_train` does.
    """
    import importlib.util

    try:
        if nproc < 1:
            raise ConfigError(f"nproc must be >= 1, got {nproc}")
        if nnodes > 1 and not rdzv_endpoint:
            raise ConfigError(f"--nnodes {nnodes} needs --rdzv-endpoint host:port")
        if importlib.util.find_spec("torchtitan") is None:
            raise ConfigError(
                "--engine torchtitan: torchtitan is not installed; "
                "pip install 'model-scaffolder[torchtitan]'"
            )
        argv = torchtitan_argv(package, config, overrides)
        import torch

        if not torch.accelerator.is_available():
            raise ConfigError(
                "--engine torchtitan needs an accelerator (torchtitan 0.3.0 assumes one); "
                "train on CPU with --engine runtime"
            )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return ConfigError.exit_code
    command = torchrun_command(argv, nproc, nnodes, rdzv_endpoint)
    command[command.index("runtime.train")] = "torchtitan.train"
    env = dict(os.environ)
    # torchtitan imports the package by name: its parent folder goes on the path.
    parent = str(Path(package).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, env.get("PYTHONPATH")]))
    return subprocess.call(command, env=env)
