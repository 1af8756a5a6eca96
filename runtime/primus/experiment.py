"""Primus experiments: metadata plus, per module, its presets merged as Primus merges them.

Primus reads presets only from its own checkout (``core/config/preset_loader.py``): a module's
``config: N`` is ``primus/configs/modules/<framework>/N`` and its ``model: N`` is
``primus/configs/models/<framework>/N`` (``N`` may omit ``.yaml``), never a file beside the
experiment; each preset's ``extends`` resolve relative to it. Its parser
(``core/launcher/parser.py``, ``core/utils/yaml_utils.py`` ``merge_namespace``) starts from the
module preset and adds the model preset's keys the module preset does not have: on a shared key
the *module* preset wins, and the model preset's value is dropped without a word (recorded here
as ``shadowed``). The experiment's ``overrides`` come last and win over both.

Where presets are read (:func:`preset_tree`):

- ``PRIMUS_PATH`` (Primus's own variable for its checkout) set: that checkout's
  ``primus/configs/`` and nothing else, exactly what ``primus-cli`` reads; a package's model
  preset must have been copied into ``primus/configs/models/megatron/`` first;
- otherwise no Primus file at all. The generated package holding the experiment stands in for
  that copy step: its ``<framework>/models/N`` is the model preset, read without its ``extends``
  (Primus's ``language_model.yaml``, which lives in Primus's tree); the module preset (Primus's
  ``pre_trainer.yaml``) is not read either. Both are listed in ``unread`` (:func:`unread_note`
  says so in one line), and a module's parameters are the model preset's own keys plus the
  experiment's overrides; a trainer value the experiment does not set takes the runtime's
  default. A package's experiment restates in its overrides every trainer value in which
  Primus's defaults differ from the package's intent, and its model preset states every
  architecture value, so both read the same job (docs/megatron.md).
"""

from __future__ import annotations

import copy
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from runtime.package_dir import package_dir_from_config_file
from runtime.primus.errors import PrimusConfigError
from runtime.primus.yaml_env import deep_merge, load_yaml_with_extends, load_yaml_without_extends

# Primus's variable for its checkout (the folder holding primus/configs/).
PRIMUS_PATH = "PRIMUS_PATH"

_EXPERIMENT_META = ("work_group", "user_name", "exp_name", "workspace")
_MODULE_KEYS = ("framework", "config", "model", "overrides")


@dataclass(frozen=True)
class PresetTree:
    """Where an experiment's presets are read.

    ``primus_path``: the Primus checkout ``PRIMUS_PATH`` names, whose ``primus/configs/``
    (:attr:`configs`) is the only place presets are read. None: no Primus file is read, and
    ``package_dir`` (the generated package holding the experiment; None outside one) gives the
    model presets, from its ``<framework>/models/``.
    """

    primus_path: Path | None = None
    package_dir: Path | None = None

    @property
    def configs(self) -> Path | None:
        """The checkout's ``primus/configs/`` (None without ``PRIMUS_PATH``)."""
        return None if self.primus_path is None else self.primus_path / "primus" / "configs"


def preset_tree(experiment_path: Path, environ: Mapping[str, str]) -> PresetTree:
    """Where the experiment at ``experiment_path`` reads presets: ``PRIMUS_PATH``'s checkout,
    else its package's model presets only."""
    value = environ.get(PRIMUS_PATH, "")
    if not value:
        return PresetTree(package_dir=package_dir_from_config_file(str(experiment_path)))
    root = Path(value).expanduser()
    configs = root / "primus" / "configs"
    if not configs.is_dir():
        raise PrimusConfigError(
            f"{PRIMUS_PATH}={value} is not a Primus checkout (no {configs}); point it at the "
            "folder that holds primus/configs/, or unset it to read the model preset from the "
            "experiment's package"
        )
    return PresetTree(primus_path=root.resolve())


@dataclass(frozen=True)
class UnreadPreset:
    """A Primus preset an experiment names that was not read, because ``PRIMUS_PATH`` is unset.

    ``path`` is where Primus reads it (``primus/configs/modules/megatron/pre_trainer.yaml``);
    ``role`` says why the experiment needs it (``module preset``, ``extended by N.yaml``).
    """

    path: str
    role: str

    def __str__(self) -> str:
        return f"{self.path} ({self.role})"


@dataclass(frozen=True)
class ResolvedModule:
    """One entry of an experiment's ``modules``, with its presets resolved.

    ``params`` is what the framework receives: ``module_preset``, plus the ``model_preset`` keys
    it does not have, then ``overrides`` (deep-merged, winning). ``shadowed`` names the model
    preset's keys that a module preset key hid. Without ``PRIMUS_PATH`` the module preset is not
    read (``config_file`` None, ``module_preset`` empty), the model preset is its own keys, and
    ``unread`` lists the Primus presets left out.
    """

    name: str
    framework: str
    config_file: Path | None
    model_file: Path | None
    module_preset: dict[str, Any]
    model_preset: dict[str, Any]
    overrides: dict[str, Any]
    params: dict[str, Any]
    shadowed: tuple[str, ...] = ()
    unread: tuple[UnreadPreset, ...] = ()


@dataclass(frozen=True)
class ResolvedExperiment:
    """A Primus experiment YAML with its metadata and every module resolved."""

    path: Path
    work_group: str
    user_name: str
    exp_name: str
    workspace: str
    presets: PresetTree
    modules: dict[str, ResolvedModule]

    @property
    def exp_root(self) -> Path:
        """Primus's output folder for this experiment: workspace/work_group/user_name/exp_name."""
        return Path(self.workspace) / self.work_group / self.user_name / self.exp_name

    @property
    def unread(self) -> tuple[UnreadPreset, ...]:
        """The Primus presets of every module that were not read (each once, in order)."""
        return tuple(dict.fromkeys(p for m in self.modules.values() for p in m.unread))


def unread_note(experiment: ResolvedExperiment) -> str | None:
    """One line naming the Primus presets not read for want of ``PRIMUS_PATH`` (None: all read)."""
    if not experiment.unread:
        return None
    return (
        f"{PRIMUS_PATH} is not set, so these Primus presets were not read: "
        + ", ".join(str(preset) for preset in experiment.unread)
        + "; trainer values come from the experiment's overrides and the runtime's defaults "
        f"(set {PRIMUS_PATH} to a Primus checkout to read what Primus reads)"
    )


def _preset_name(config_type: str, framework: str, name: str, what: str) -> PurePosixPath:
    """``name`` as a path relative to ``primus/configs/<config_type>/<framework>/`` (``.yaml``
    added when it has no YAML suffix); names that leave that folder are refused."""
    file_name = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    relative = PurePosixPath(file_name)
    if relative.is_absolute() or ".." in relative.parts:
        raise PrimusConfigError(
            f"{what} '{name}' must name a file inside primus/configs/{config_type}/{framework}/ "
            "(Primus reads presets from nowhere else): write its file name"
        )
    return relative


def _primus_preset(configs: Path, config_type: str, framework: str, name: str, what: str) -> Path:
    """A preset of the ``PRIMUS_PATH`` checkout's ``configs``, or a one-line error saying what
    to do."""
    relative = _preset_name(config_type, framework, name, what)
    folder = configs / config_type / framework
    if (folder / relative).is_file():
        return (folder / relative).resolve()
    primus_folder = f"primus/configs/{config_type}/{framework}/"
    if config_type == "models":
        hint = (
            f"copy the package's {framework}/models/{relative} into {primus_folder} of that "
            f"checkout (Primus reads model presets only there), or unset {PRIMUS_PATH} to read "
            "it from the package"
        )
    else:
        hint = f"name a module preset that is in {primus_folder} of that checkout"
    raise PrimusConfigError(f"{what} '{name}' not found in {folder}/; {hint}")


def _package_preset(tree: PresetTree, exp_path: Path, framework: str, name: str, what: str) -> Path:
    """Without ``PRIMUS_PATH``: a model preset from the package holding the experiment, which
    stands in for Primus's ``primus/configs/models/<framework>/``."""
    relative = _preset_name("models", framework, name, what)
    instead = (
        f"or set {PRIMUS_PATH} to a Primus checkout whose primus/configs/models/{framework}/ "
        "holds it"
    )
    if tree.package_dir is None:
        raise PrimusConfigError(
            f"{what} '{name}': without {PRIMUS_PATH} the runtime reads model presets only from "
            f"the generated package holding the experiment, and {exp_path} is in none; run the "
            f"experiment from its package, {instead}"
        )
    folder = tree.package_dir / framework / "models"
    if (folder / relative).is_file():
        return (folder / relative).resolve()
    raise PrimusConfigError(f"{what} '{name}' not found in {folder}/; put it there, {instead}")


def _read_presets(
    exp_path: Path,
    tree: PresetTree,
    framework: str,
    names: tuple[str, str | None],
    where: str,
    environ: Mapping[str, str],
) -> tuple[Path | None, dict[str, Any], Path | None, dict[str, Any], tuple[UnreadPreset, ...]]:
    """``(config_file, module preset, model_file, model preset, unread)`` of one module, whose
    ``config`` and ``model`` are ``names``."""
    config, model = names
    config_what, model_what = f"{where}: module preset", f"{where}: model preset"
    if tree.configs is not None:
        config_file = _primus_preset(tree.configs, "modules", framework, config, config_what)
        model_file = None
        if model is not None:
            model_file = _primus_preset(tree.configs, "models", framework, model, model_what)
        return (
            config_file,
            load_yaml_with_extends(config_file, environ),
            model_file,
            {} if model_file is None else load_yaml_with_extends(model_file, environ),
            (),
        )
    config_name = _preset_name("modules", framework, config, config_what)
    unread = [UnreadPreset(f"primus/configs/modules/{framework}/{config_name}", "module preset")]
    if model is None:
        return None, {}, None, {}, tuple(unread)
    model_file = _package_preset(tree, exp_path, framework, model, model_what)
    model_preset, parents = load_yaml_without_extends(model_file, environ)
    # In Primus the model preset sits in primus/configs/models/<framework>/: its parents too.
    folder = posixpath.join("primus/configs/models", framework, str(PurePosixPath(model).parent))
    extended_by = f"extended by {model_file.name}"
    unread += [
        UnreadPreset(posixpath.normpath(posixpath.join(folder, parent)), extended_by)
        for parent in parents
    ]
    return None, {}, model_file, model_preset, tuple(unread)


def _resolve_module(
    exp_path: Path, tree: PresetTree, name: str, entry: Any, environ: Mapping[str, str]
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

    config_file, module_preset, model_file, model_preset, unread = _read_presets(
        exp_path, tree, framework, (config, model), where, environ
    )
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
        unread=unread,
    )


def resolve_experiment(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> ResolvedExperiment:
    """Resolve a Primus experiment YAML: metadata plus, per module, the merged parameters.

    The experiment itself may use ``extends``. It needs ``work_group``, ``user_name``,
    ``exp_name``, ``workspace`` and a non-empty ``modules`` mapping whose entries have
    ``framework`` and ``config`` and optionally ``model`` and ``overrides``. Placeholders are
    expanded with ``environ`` (default ``os.environ``), which also gives ``PRIMUS_PATH``. See the
    module docstring for where presets are read and the precedence (Primus's: the module preset
    wins over the model preset on a shared key; overrides win over both). Raises
    :class:`PrimusConfigError` (one line) for a malformed experiment or a preset not found, naming
    the folders searched. Without ``PRIMUS_PATH``, the Primus presets it could not read are in
    ``unread`` (:func:`unread_note`), not an error.
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
    tree = preset_tree(exp_path, env)
    return ResolvedExperiment(
        path=exp_path,
        presets=tree,
        work_group=str(data["work_group"]),
        user_name=str(data["user_name"]),
        exp_name=str(data["exp_name"]),
        workspace=str(data["workspace"]),
        modules={
            str(name): _resolve_module(exp_path, tree, str(name), entry, env)
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
