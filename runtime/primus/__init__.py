"""Resolve Primus experiment YAMLs and map their Megatron-LM fields onto the runtime's config.

Primus describes a Megatron run with three layers of YAML:

1. the **experiment** (entry point): ``work_group``, ``user_name``, ``exp_name``, ``workspace``
   and ``modules.<name>`` with ``framework``, ``config`` (a module preset), ``model`` (a model
   preset) and ``overrides``;
2. the **module preset** (trainer defaults, e.g. Primus's ``pre_trainer.yaml``);
3. the **model preset** (architecture and tokenizer, e.g. a package's
   ``megatron/models/<package>.yaml``).

With ``PRIMUS_PATH`` set, presets come only from that Primus checkout's ``primus/configs/``, as
in Primus. Without it no Primus file is read: the model preset comes from the generated package
holding the experiment (standing in for copying it into Primus), and the Primus presets it could
not read (the module preset, the model preset's ``extends``) are reported in one line
(:func:`unread_note`, :mod:`~runtime.primus.experiment`).

Modules, each importing only the ones above it:

- :mod:`~runtime.primus.errors`: :class:`PrimusConfigError`, every error, one line;
- :mod:`~runtime.primus.yaml_env`: ``extends`` chains, ``${VAR:default}``, deep merge;
- :mod:`~runtime.primus.experiment`: experiment -> modules with their presets merged; where
  presets are read (:func:`preset_tree`) and which were not (:func:`unread_note`);
- :mod:`~runtime.primus.megatron_args`: Megatron fields -> runtime sections and ModelArgs
  names (:func:`megatron_to_runtime`), :func:`match_flavor`;
- :mod:`~runtime.primus.sections`: :func:`load_runtime_sections`, the one function that turns
  an experiment YAML into ``runtime.config`` sections (training and tests both use it).
"""

from runtime.primus.errors import PrimusConfigError
from runtime.primus.experiment import (
    PRIMUS_PATH,
    PresetTree,
    ResolvedExperiment,
    ResolvedModule,
    UnreadPreset,
    preset_tree,
    resolve_experiment,
    training_module,
    unread_note,
)
from runtime.primus.megatron_args import (
    ARCHITECTURE_FIELDS,
    FLAVOR_FIELDS,
    MEGATRON_LLAMA3_ROPE,
    match_flavor,
    megatron_to_runtime,
)
from runtime.primus.sections import load_runtime_sections, map_training_module
from runtime.primus.yaml_env import (
    deep_merge,
    expand_env,
    load_yaml_with_extends,
    load_yaml_without_extends,
)

__all__ = [
    "ARCHITECTURE_FIELDS",
    "FLAVOR_FIELDS",
    "MEGATRON_LLAMA3_ROPE",
    "PRIMUS_PATH",
    "PresetTree",
    "PrimusConfigError",
    "ResolvedExperiment",
    "ResolvedModule",
    "UnreadPreset",
    "deep_merge",
    "expand_env",
    "load_runtime_sections",
    "load_yaml_with_extends",
    "load_yaml_without_extends",
    "map_training_module",
    "match_flavor",
    "megatron_to_runtime",
    "preset_tree",
    "resolve_experiment",
    "training_module",
    "unread_note",
]
