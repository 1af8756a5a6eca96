"""Find the model package a training config names and its TrainSpec."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from runtime.config import ConfigError
from runtime.package_dir import package_dir_from_config_file
from runtime.protocols import TrainSpec, get_train_spec


def _import_from_folder(package_dir: Path) -> ModuleType:
    if not (package_dir / "__init__.py").is_file():
        raise ConfigError(f"model.package_dir {package_dir} is not a Python package")
    parent = str(package_dir.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    return importlib.import_module(package_dir.name)


def _import_by_name(name: str) -> ModuleType:
    if not name:
        raise ConfigError("model.name is empty: name the model package to train")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.split(".")[0] == exc.name.split(".")[0]:
            raise ConfigError(
                f"model package '{name}' not found; put its parent folder on PYTHONPATH, "
                "set model.package_dir, or use a config file inside the package"
            ) from None
        raise


def import_model_package(job_config: Any) -> ModuleType:
    """Import the package: ``model.package_dir``, else the config file's package, else by name."""
    if job_config.model.package_dir:
        return _import_from_folder(Path(job_config.model.package_dir).resolve())
    package_dir = package_dir_from_config_file(job_config.job.config_file)
    if package_dir is not None:
        return _import_from_folder(package_dir)
    return _import_by_name(job_config.model.name)


def resolve_train_spec(job_config: Any) -> tuple[TrainSpec, Path]:
    """Import the model package and return its TrainSpec and folder; checks the flavor."""
    module = import_model_package(job_config)
    if hasattr(module, "get_train_spec"):
        spec = module.get_train_spec()
    else:
        spec = get_train_spec(job_config.model.name or module.__name__)
    flavor = job_config.model.flavor
    if flavor not in spec.model_args:
        known = ", ".join(spec.model_args)
        raise ConfigError(f"model.flavor '{flavor}' is not a flavor of {spec.name} ({known})")
    return spec, Path(module.__file__).resolve().parent
