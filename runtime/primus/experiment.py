"""Primus experiments: metadata plus, per module, its presets merged as Primus merges them.

Primus (``core/utils/yaml_utils.py`` ``merge_namespace``) starts from the module preset and
adds the model preset's keys the module preset does not have: on a shared key the *module*
preset wins, and the model preset's value is dropped without a word (recorded here as
``shadowed``). The experiment's ``overrides`` come last and win over both.

Preset files are looked up relative to the experiment's folder; for a module preset named ``N``
of framework ``F`` the search path is::

    <exp dir>/modules/N, <exp dir>/modules/F/N, <exp dir>/N

and for a model preset ``<exp dir>/models/N``, ``<exp dir>/models/F/N``, ``<exp dir>/N``; the
first existing file wins. ``N`` may omit its ``.yaml`` suffix; an absolute ``N`` is used as is.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.primus.errors import PrimusConfigError
from runtime.primus.yaml_env import deep_merge, load_yaml_with_extends

_EXPERIMENT_META = ("work_group", "user_name", "exp_name", "workspace")
_MODULE_KEYS = ("framework", "config", "model", "overrides")


@dataclass(frozen=True)
class ResolvedModule:
    """One entry of an experiment's ``modules``, with its presets resolved.

    ``params`` is what the framework receives: ``module_preset``, plus the ``model_preset`` keys
    it does not have, then ``overrides`` (deep-merged, winning). ``shadowed`` names the model
    preset's keys that a module preset key hid.
    """

    name: str
    framework: str
    config_file: Path
    model_file: Path | None
    module_preset: dict[str, Any]
    model_preset: dict[str, Any]
    overrides: dict[str, Any]
    params: dict[str, Any]
    shadowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedExperiment:
    """A Primus experiment YAML with its metadata and every module resolved."""

    path: Path
    work_group: str
    user_name: str
    exp_name: str
    workspace: str
    modules: dict[str, ResolvedModule]

    @property
    def exp_root(self) -> Path:
        """Primus's output folder for this experiment: workspace/work_group/user_name/exp_name."""
        return Path(self.workspace) / self.work_group / self.user_name / self.exp_name


def _find_preset(exp_dir: Path, folder: str, framework: str, name: str, what: str) -> Path:
    """Locate a preset file named by an experiment (see the module docstring's search path)."""
    file_name = name if Path(name).suffix in (".yaml", ".yml") else f"{name}.yaml"
    if Path(file_name).is_absolute():
        candidates = [Path(file_name)]
    else:
        candidates = [
            exp_dir / folder / file_name,
            exp_dir / folder / framework / file_name,
            exp_dir / file_name,
        ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise PrimusConfigError(f"{what} '{name}' not found (looked for {tried})")


def _resolve_module(
    exp_path: Path, name: str, entry: Any, environ: Mapping[str, str]
) -> ResolvedModule:
    """Resolve ``modules.<name>`` of the experiment at ``exp_path``."""
    where = f"{exp_path}: modules.{name}"
    if not isinstance(entry, dict):
        raise PrimusConfigError(f"{where} must be a mapping")
    unknown = sorted(set(entry) - set(_MODULE_KEYS))
    if unknown:
        raise PrimusConfigError(
            f"{where} has unknown key(s) {', '.join(unknown)} (expected {', '.join(_MODULE_KEYS)})"
        )
    framework, config, model = entry.get("framework"), entry.get("config"), entry.get("model")
    for key, value in (("framework", framework), ("config", config)):
        if not isinstance(value, str) or not value:
            raise PrimusConfigError(f"{where}.{key} must be a non-empty string")
    if model is not None and (not isinstance(model, str) or not model):
        raise PrimusConfigError(f"{where}.model must be a non-empty string when given")
    overrides = entry.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise PrimusConfigError(f"{where}.overrides must be a mapping")

    exp_dir = exp_path.parent
    config_file = _find_preset(exp_dir, "modules", framework, config, f"{where}: module preset")
    module_preset = load_yaml_with_extends(config_file, environ)
    model_file = None
    model_preset: dict[str, Any] = {}
    if model is not None:
        model_file = _find_preset(exp_dir, "models", framework, model, f"{where}: model preset")
        model_preset = load_yaml_with_extends(model_file, environ)
    presets = copy.deepcopy(module_preset)
    shadowed = tuple(sorted(key for key in model_preset if key in presets))
    presets.update({k: copy.deepcopy(v) for k, v in model_preset.items() if k not in presets})
    params = deep_merge(presets, overrides)
    return ResolvedModule(
        name=name,
        framework=framework,
        config_file=config_file,
        model_file=model_file,
        module_preset=module_preset,
        model_preset=model_preset,
        overrides=copy.deepcopy(overrides),
        params=params,
        shadowed=shadowed,
    )


def resolve_experiment(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> ResolvedExperiment:
    """Resolve a Primus experiment YAML: metadata plus, per module, the merged parameters.

    The experiment itself may use ``extends``. It needs ``work_group``, ``user_name``,
    ``exp_name``, ``workspace`` and a non-empty ``modules`` mapping whose entries have
    ``framework`` and ``config`` and optionally ``model`` and ``overrides``. Placeholders are
    expanded with ``environ`` (default ``os.environ``). See the module docstring for the preset
    search path and the precedence (Primus's: the module preset wins over the model preset on a
    shared key; overrides win over both).
    """
    env = os.environ if environ is None else environ
    exp_path = Path(path).resolve()
    data = load_yaml_with_extends(exp_path, env)
    missing = [key for key in _EXPERIMENT_META if data.get(key) in (None, "")]
    if missing:
        raise PrimusConfigError(f"{exp_path}: missing {', '.join(missing)}")
    modules = data.get("modules")
    if not isinstance(modules, dict) or not modules:
        raise PrimusConfigError(f"{exp_path}: 'modules' must be a non-empty mapping")
    return ResolvedExperiment(
        path=exp_path,
        work_group=str(data["work_group"]),
        user_name=str(data["user_name"]),
        exp_name=str(data["exp_name"]),
        workspace=str(data["workspace"]),
        modules={
            str(name): _resolve_module(exp_path, str(name), entry, env)
            for name, entry in modules.items()
        },
    )


def training_module(experiment: ResolvedExperiment) -> ResolvedModule:
    """The Megatron module to train: ``pre_trainer`` if present, else the only Megatron one."""
    megatron = {n: m for n, m in experiment.modules.items() if m.framework == "megatron"}
    if "pre_trainer" in megatron:
        return megatron["pre_trainer"]
    if len(megatron) == 1:
        return next(iter(megatron.values()))
    found = ", ".join(megatron) or "none"
    raise PrimusConfigError(
        f"{experiment.path}: expected a megatron module named pre_trainer or exactly one "
        f"megatron module (found: {found})"
    )
