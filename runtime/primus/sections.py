"""A Primus experiment YAML -> ``runtime.config`` sections: the one path training and tests take.

``runtime.config`` reads ``--job.config_file <experiment>.yaml`` with :func:`load_runtime_sections`,
and the generated packages' ``tests/test_megatron_yaml.py`` checks that same function.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runtime.package_dir import package_dir_from_config_file
from runtime.primus.errors import PrimusConfigError
from runtime.primus.experiment import (
    ResolvedExperiment,
    resolve_experiment,
    training_module,
    unread_note,
)
from runtime.primus.megatron_args import match_flavor, megatron_to_runtime


def _package_flavors(experiment_path: Path) -> Mapping[str, Any] | None:
    """The flavors of the generated package that holds ``experiment_path``, if any."""
    package_dir = package_dir_from_config_file(str(experiment_path))
    if package_dir is None:
        return None
    if str(package_dir.parent) not in sys.path:
        sys.path.insert(0, str(package_dir.parent))
    package = importlib.import_module(package_dir.name)
    imported_from = Path(package.__file__ or "").resolve().parent
    if imported_from != package_dir.resolve():
        raise PrimusConfigError(
            f"package {package_dir.name} is already imported from {imported_from}, "
            f"not {package_dir}"
        )
    if not hasattr(package, "get_train_spec"):
        return None
    return package.get_train_spec().model_args


def map_training_module(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> tuple[ResolvedExperiment, dict[str, Any]]:
    """Resolve an experiment and map its training module (:func:`megatron_to_runtime`).

    The training module is ``pre_trainer``, or the only Megatron module. Raises
    :class:`PrimusConfigError` when a set training field cannot be honoured (the ``unsupported``
    notes).
    """
    experiment = resolve_experiment(path, environ)
    mapped = megatron_to_runtime(training_module(experiment))
    if mapped["unsupported"]:
        raise PrimusConfigError(
            f"{experiment.path.name}: the runtime cannot honour " + "; ".join(mapped["unsupported"])
        )
    return experiment, mapped


def load_runtime_sections(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    report: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Read a Primus experiment YAML as ``runtime.config`` sections: ``{section: {key: value}}``.

    The training module is mapped with :func:`megatron_to_runtime`; empty sections are left out.
    Added to its sections:

    - ``job``: ``dump_folder`` = Primus's ``workspace/work_group/user_name/exp_name``,
      ``description`` = the experiment name;
    - ``model``: ``flavor`` = the flavor of the generated package holding the YAML (found as
      ``runtime.package`` finds a config file's package) whose ModelArgs the model preset
      describes; no ``model`` section for a YAML outside a package.

    ``environ`` (default ``os.environ``) expands ``${VAR}`` placeholders and gives
    ``PRIMUS_PATH``. Without it, ``report`` (when given) receives the one line of
    :func:`~runtime.primus.experiment.unread_note`: the Primus presets not read. Raises
    :class:`PrimusConfigError` when a set training field cannot be honoured (the ``unsupported``
    notes) or the model preset matches no flavor of the package. Architecture notes do not stop a
    run: the runtime builds the package's model, checked by flavor.
    """
    experiment, mapped = map_training_module(path, environ)
    note = unread_note(experiment)
    if note is not None and report is not None:
        report(note)
    sections = {name: dict(values) for name, values in mapped["sections"].items() if values}
    sections["job"] = {
        "dump_folder": str(experiment.exp_root),
        "description": f"Primus experiment {experiment.exp_name}",
    }
    flavors = _package_flavors(experiment.path)
    if flavors is not None:
        sections["model"] = {"flavor": match_flavor(flavors, mapped["model_args"])}
    return sections
