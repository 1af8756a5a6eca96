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
    """A config path: as given if it exists, else ``<package>/train_configs/<config>[.toml]``,
    else ``<package>/<config>`` (``megatron/exp_pretrain.yaml``)."""
    if config and Path(config).is_file():
        return str(Path(config).resolve())
    if package_dir is None:
        raise ConfigError(f"config file not found: {config}" if config else "no config given")
    name = config or DEFAULT_CONFIG
    for path in (
        package_dir / "train_configs" / name,
        package_dir / "train_configs" / f"{name}.toml",
        package_dir / name,
    ):
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


SMOKE_KEYS = ("seq_len", "steps", "local_batch_size")  # taken from the debug TOML's [training]


def smoke_overrides(package: str) -> list[str]:
    """Overrides that shrink any config of ``package`` (a full-size TOML, the Primus experiment
    YAML) to the package's debug run: the ``debugmodel`` flavor and ``debug_model.toml``'s
    sequence length, steps and local batch size, global batch ``-1`` (any ``--nproc``)."""
    package_dir = _package_dir(package)
    debug = package_dir / "train_configs" / DEFAULT_CONFIG if package_dir else None
    if debug is None or not debug.is_file():
        raise ConfigError(f"--smoke needs a package folder with train_configs/{DEFAULT_CONFIG}")
    import tomllib

    training = tomllib.loads(debug.read_text()).get("training", {})
    overrides = ["--model.flavor", "debugmodel", "--training.global_batch_size", "-1"]
    for key in SMOKE_KEYS:
        if key in training:
            overrides += [f"--training.{key}", str(training[key])]
    return overrides


def torchrun_command(
    argv: Sequence[str],
    nproc: int,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    module: str = "runtime.train",
) -> list[str]:
    """``python -m torch.distributed.run ... -m MODULE ARGV`` (standalone on one node)."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1 and rdzv_endpoint is None:
        command.append("--standalone")
    else:
        command += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}"]
    return [*command, "-m", module, *argv]


def check_launch(nproc: int, nnodes: int, rdzv_endpoint: str | None) -> None:
    """Refuse rank and node counts torchrun cannot start (``ConfigError``, one line)."""
    if nproc < 1:
        raise ConfigError(f"nproc must be >= 1, got {nproc}")
    if nnodes < 1:
        raise ConfigError(f"nnodes must be >= 1, got {nnodes}")
    if nnodes > 1 and not rdzv_endpoint:
        raise ConfigError(
            f"--nnodes {nnodes} needs --rdzv-endpoint host:port, the rendezvous every node "
            "joins (run the same command on each node)"
        )


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
    smoke: bool = False,
) -> int:
    """Train ``package`` (a package folder or import name) on ``nproc`` local ranks.

    ``config`` is a TOML/YAML path or a name in ``<package>/train_configs`` (default
    ``debug_model.toml``); ``overrides`` are ``--section.key value`` strings, applied after the
    :func:`smoke_overrides` when ``smoke``. Returns the exit code: 0 on success, 2 for bad input
    (printed as one line on stderr), else torchrun's.
    """
    try:
        check_launch(nproc, nnodes, rdzv_endpoint)
        if smoke:
            overrides = [*smoke_overrides(package), *overrides]
        argv = build_argv(package, config, overrides)
        validate(argv, world_size=nproc * nnodes)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return ConfigError.exit_code
    command = torchrun_command(argv, nproc, nnodes, rdzv_endpoint)
    return subprocess.call(command, env=worker_env(nproc))


def worker_env(nproc: int) -> dict[str, str]:
    """The environment for torchrun: OMP_NUM_THREADS, when unset, shares this machine's cores
    among the ``nproc`` ranks (torchrun would set 1 and print a banner saying so)."""
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        env["OMP_NUM_THREADS"] = str(max(1, (cores or 1) // nproc))
    return env


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
        check_launch(nproc, nnodes, rdzv_endpoint)
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
    command = torchrun_command(argv, nproc, nnodes, rdzv_endpoint, module="torchtitan.train")
    env = worker_env(nproc)
    # torchtitan imports the package by name: its parent folder goes on the path.
    parent = str(Path(package).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, env.get("PYTHONPATH")]))
    return subprocess.call(command, env=env)
