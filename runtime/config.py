"""The training configuration: torchtitan-style sections loaded from TOML plus CLI overrides.

``JobConfig.load(argv)`` reads ``--job.config_file`` (TOML, or a Primus experiment YAML through
``runtime.primus.load_runtime_sections``) and then applies every ``--section.key value``
override. Unknown sections or keys and values of the wrong type raise ``ConfigError`` with a
one-line message naming them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """Bad training configuration; the launcher prints the one-line message and exits 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def _choice(default: Any, *choices: Any) -> Any:
    """A dataclass field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": choices})


@dataclass
class Job:
    """Where outputs go and what the run is called."""

    config_file: str = ""
    dump_folder: str = "./outputs"
    description: str = ""
    print_config: bool = False


@dataclass
class Model:
    """Which model package and flavor to train.

    ``name`` is the package's import name (and its registered TrainSpec name); ``package_dir``
    optionally points at the package folder; ``hf_assets_path`` holds tokenizer/config files.
    ``args_overrides`` replaces fields of the flavor's ModelArgs (TOML table
    ``[model.args_overrides]``, or ``--model.args_overrides n_layers=2,n_kv_heads=2``).
    """

    name: str = ""
    flavor: str = "debugmodel"
    hf_assets_path: str = ""
    package_dir: str = ""
    args_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Optimizer:
    """AdamW hyper-parameters."""

    name: str = _choice("AdamW", "AdamW", "Adam")
    lr: float = 8e-4
    eps: float = 1e-8
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1
    implementation: str = _choice("fused", "foreach", "fused", "for-loop")


@dataclass
class LRScheduler:
    """Linear warmup, then an optional stable phase, then decay to ``min_lr_factor * lr``.

    ``decay_ratio`` is the fraction of the steps spent decaying at the end (``None``: every step
    after warmup decays).
    """

    warmup_steps: int = 200
    decay_ratio: float | None = None
    decay_type: str = _choice("linear", "linear", "cosine", "sqrt")
    min_lr_factor: float = 0.0


@dataclass
class Training:
    """Batch sizes, data, seeding and precision.

    ``global_batch_size`` (samples per optimizer step) stays fixed whatever the parallelism; -1
    means ``local_batch_size * data-parallel degree``. The difference is made up by gradient
    accumulation. ``init`` chooses how weights are initialized: ``"full"`` builds the whole model
    on CPU on every rank from ``seed`` (identical on 1 or N ranks), ``"local"`` initializes the
    sharded model in place (cheaper for big models, not parallelism-invariant).
    """

    local_batch_size: int = 8
    global_batch_size: int = -1
    seq_len: int = 2048
    max_norm: float = 1.0
    steps: int = 10000
    dataset: str = _choice("mock", "mock", "text", "jsonl", "hf")
    dataset_path: str = ""
    dataset_text_field: str = "text"
    tokenizer_path: str = ""
    seed: int = 0
    deterministic: bool = False
    init: str = _choice("full", "full", "local")
    mixed_precision_param: str = _choice("bfloat16", "bfloat16", "float16", "float32")
    mixed_precision_reduce: str = _choice("float32", "bfloat16", "float32")
    gc_freq: int = 50
    # Steps in a row whose loss or gradient norm is not finite that are skipped (no update)
    # before the run stops; 0 stops at the first.
    nonfinite_patience: int = 0
    # The output projection runs inside the loss, chunk by chunk over tokens, so that training
    # never holds [tokens, vocab] logits (models with a ``skip_output`` switch and an output
    # layer without bias; others use the plain loss on their logits): "auto" when a
    # micro-batch's logits would fill at least FUSED_OUTPUT_MIN_LOGITS, "on", or "off".
    fused_output_loss: str = _choice("auto", "auto", "on", "off")


@dataclass
class Parallelism:
    """Parallel degrees; their product must equal the world size (-1 shard degree: the rest).

    ``expert_parallel_degree`` splits a mixture of experts' experts over that many of the
    data-parallel shard ranks (it must divide the shard degree and the number of experts).
    """

    data_parallel_replicate_degree: int = 1
    data_parallel_shard_degree: int = -1
    tensor_parallel_degree: int = 1
    pipeline_parallel_degree: int = 1
    pipeline_parallel_schedule: str = _choice("1F1B", "1F1B", "GPipe", "Interleaved1F1B")
    pipeline_parallel_microbatch_size: int = 1
    pipeline_parallel_layers_per_stage: int = -1
    expert_parallel_degree: int = 1
    fsdp_reshard_after_forward: str = _choice("default", "default", "always", "never")


@dataclass
class Checkpoint:
    """Distributed checkpoints (DCP) and Hugging Face import/export."""

    enable: bool = False
    folder: str = "checkpoint"
    interval: int = 500
    async_mode: str = _choice("disabled", "disabled", "async")
    initial_load_path: str = ""
    initial_load_in_hf: bool = False
    last_save_in_hf: bool = False
    export_dtype: str = _choice("float32", "float32", "bfloat16", "float16")
    keep_latest_k: int = 0


@dataclass
class ActivationCheckpoint:
    """Activation checkpointing: ``selective_ac_option`` is ``"op"`` or every-N-layers ``"2"``."""

    mode: str = _choice("none", "none", "full", "selective")
    selective_ac_option: str = "2"


@dataclass
class Compile:
    """torch.compile of each transformer block (``"model"``) and of the loss (``"loss"``)."""

    enable: bool = False
    components: list[str] = field(default_factory=lambda: ["model", "loss"])


@dataclass
class Metrics:
    """Console, ``metrics.jsonl`` and TensorBoard logging."""

    log_freq: int = 1
    enable_tensorboard: bool = False
    save_tb_folder: str = "tb"


@dataclass
class Moe:
    """Load balancing of mixture-of-experts models (models without experts ignore it).

    ``load_balancing``: ``aux_loss`` adds ``aux_loss_coef`` (None: the model's
    router_aux_loss_coef) times the model's load-balancing loss to the training loss;
    ``expert_bias`` balances without a loss: before each optimizer step every MoE layer's
    routing bias moves by ``expert_bias_update_rate`` towards the experts that got fewer tokens
    than the mean; ``none`` does neither.
    """

    load_balancing: str = _choice("aux_loss", "aux_loss", "expert_bias", "none")
    aux_loss_coef: float | None = None
    expert_bias_update_rate: float = 1e-3


@dataclass
class JobConfig:
    """All configuration sections of one training job."""

    job: Job = field(default_factory=Job)
    model: Model = field(default_factory=Model)
    optimizer: Optimizer = field(default_factory=Optimizer)
    lr_scheduler: LRScheduler = field(default_factory=LRScheduler)
    training: Training = field(default_factory=Training)
    parallelism: Parallelism = field(default_factory=Parallelism)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    activation_checkpoint: ActivationCheckpoint = field(default_factory=ActivationCheckpoint)
    compile: Compile = field(default_factory=Compile)
    metrics: Metrics = field(default_factory=Metrics)
    moe: Moe = field(default_factory=Moe)

    @classmethod
    def load(cls, argv: list[str] | None = None) -> JobConfig:
        """Build a config from ``--job.config_file`` (if given) and ``--section.key value`` args."""
        overrides = parse_overrides(argv or [])
        config = cls()
        config_file = overrides.pop("job.config_file", None)
        if config_file is not None:
            config.update(read_config_file(config_file))
            config.job.config_file = config_file
        for dotted, raw in overrides.items():
            config.set_from_string(dotted, raw)
        config.check_consistency()
        return config

    @classmethod
    def from_dict(cls, sections: dict[str, Any]) -> JobConfig:
        """Build a config from ``{section: {key: value}}`` (values already typed, as in TOML)."""
        config = cls()
        config.update(sections)
        config.check_consistency()
        return config

    def update(self, sections: dict[str, Any]) -> None:
        """Apply typed values ``{section: {key: value}}``, checking names, types and choices."""
        for section_name, values in sections.items():
            section = self._section(section_name)
            if not isinstance(values, dict):
                raise ConfigError(f"config section [{section_name}] must be a table")
            for key, value in values.items():
                spec = _field_spec(section, section_name, key)
                setattr(section, key, _check_value(f"{section_name}.{key}", spec, value))

    def set_from_string(self, dotted: str, raw: str | None) -> None:
        """Apply one CLI override ``--section.key raw`` (``raw`` None: a bare boolean flag).

        Table values (``model.args_overrides``) merge into the current table.
        """
        section_name, _, key = dotted.partition(".")
        if not key:
            raise ConfigError(f"override --{dotted} must look like --section.key")
        section = self._section(section_name)
        spec = _field_spec(section, section_name, key)
        value = _parse_string(dotted, spec, raw)
        if isinstance(value, dict):
            # Table overrides merge into what the config file set.
            value = {**getattr(section, key), **value}
        setattr(section, key, value)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The config as plain ``{section: {key: value}}``."""
        return dataclasses.asdict(self)

    def check_consistency(self) -> None:
        """Cross-field checks that need no model or world size."""
        training = self.training
        for name in ("local_batch_size", "seq_len", "steps"):
            if getattr(training, name) < 1:
                raise ConfigError(f"training.{name} must be >= 1, got {getattr(training, name)}")
        if training.global_batch_size != -1 and training.global_batch_size < 1:
            raise ConfigError("training.global_batch_size must be -1 or >= 1")
        self._check_numbers()
        if training.dataset != "mock" and not training.dataset_path:
            raise ConfigError(f"training.dataset {training.dataset!r} needs training.dataset_path")
        if self.checkpoint.interval < 1:
            raise ConfigError("checkpoint.interval must be >= 1")
        ratio = self.lr_scheduler.decay_ratio
        if ratio is not None and not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"lr_scheduler.decay_ratio must be in [0, 1], got {ratio}")
        coef = self.moe.aux_loss_coef
        if coef is not None and not coef >= 0.0:
            raise ConfigError(f"moe.aux_loss_coef must be >= 0, got {coef}")
        if not self.moe.expert_bias_update_rate > 0.0:
            raise ConfigError(
                f"moe.expert_bias_update_rate must be > 0, got {self.moe.expert_bias_update_rate}"
            )
        unknown = set(self.compile.components) - {"model", "loss"}
        if unknown:
            raise ConfigError(f"compile.components: unknown {sorted(unknown)}; use model, loss")

    def _check_numbers(self) -> None:
        """Values a worker would crash on or train wrongly with, refused before any starts."""
        training, optimizer = self.training, self.optimizer
        positive = {
            "training.max_norm": training.max_norm,  # <= 0 would flip or zero the gradients
            "optimizer.eps": optimizer.eps,
            "moe.expert_bias_update_rate": self.moe.expert_bias_update_rate,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value}")
        non_negative = {
            "optimizer.lr": optimizer.lr,
            "optimizer.weight_decay": optimizer.weight_decay,
            "lr_scheduler.min_lr_factor": self.lr_scheduler.min_lr_factor,
        }
        for name, value in non_negative.items():
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        for name, value in (
            ("optimizer.beta1", optimizer.beta1),
            ("optimizer.beta2", optimizer.beta2),
        ):
            if not (math.isfinite(value) and 0 <= value < 1):
                raise ConfigError(f"{name} must be in [0, 1), got {value}")
        counts = {
            "training.gc_freq": training.gc_freq,
            "metrics.log_freq": self.metrics.log_freq,
        }
        for name, value in counts.items():
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if training.nonfinite_patience < 0:
            raise ConfigError(
                f"training.nonfinite_patience must be >= 0, got {training.nonfinite_patience}"
            )
        if self.lr_scheduler.warmup_steps < 0:
            raise ConfigError(
                f"lr_scheduler.warmup_steps must be >= 0, got {self.lr_scheduler.warmup_steps}"
            )
        load = self.checkpoint.initial_load_path
        if load and not Path(load).exists():
            raise ConfigError(f"checkpoint.initial_load_path not found: {load}")
        if training.dataset == "hf" and not (training.tokenizer_path or self.model.hf_assets_path):
            raise ConfigError(
                "training.dataset 'hf' needs a tokenizer: set training.tokenizer_path or "
                "model.hf_assets_path"
            )

    def _section(self, name: str) -> Any:
        if name not in {f.name for f in dataclasses.fields(self)}:
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise ConfigError(f"unknown config section '{name}' (known: {known})")
        return getattr(self, name)


def parse_overrides(argv: list[str]) -> dict[str, str | None]:
    """Parse ``["--a.b", "1", "--c.d=x", "--e.f"]`` into ``{"a.b": "1", "c.d": "x", "e.f": None}``.

    A bare ``--e.f`` (no value) is a boolean flag.
    """
    overrides: dict[str, str | None] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument {arg!r}; use --section.key value")
        name, eq, value = arg[2:].partition("=")
        if eq:
            overrides[name] = value
        elif index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            index += 1
            overrides[name] = argv[index]
        else:
            overrides[name] = None
        index += 1
    return overrides


def read_config_file(path: str) -> dict[str, Any]:
    """Read a TOML config, or a Primus experiment YAML mapped onto the runtime sections."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {path}")
    if file.suffix in (".yaml", ".yml"):
        return _read_primus_yaml(file)
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None


def _read_primus_yaml(file: Path) -> dict[str, Any]:
    """A Primus experiment YAML as sections, through ``runtime.primus.load_runtime_sections``."""
    try:
        from runtime.primus import load_runtime_sections
    except ImportError as exc:
        raise ConfigError(f"cannot read {file}: Primus YAML support unavailable ({exc})") from None
    try:
        return load_runtime_sections(file, report=_note_on_first_rank)
    except (ValueError, KeyError, OSError) as exc:  # PrimusConfigError is a ValueError
        raise ConfigError(f"{file}: {exc}") from None


def _note_on_first_rank(message: str) -> None:
    """Print ``note: message`` in rank 0 only (or in a process outside torchrun)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"note: {message}", flush=True)


@dataclass(frozen=True)
class _FieldInfo:
    """A config field's annotation split into its base type and whether None is allowed."""

    base: Any
    optional: bool
    choices: tuple[Any, ...]


def _field_spec(section: Any, section_name: str, key: str) -> _FieldInfo:
    fields = {f.name: f for f in dataclasses.fields(section)}
    if key not in fields:
        known = ", ".join(fields)
        raise ConfigError(f"unknown config key '{section_name}.{key}' (known: {known})")
    hint = _section_hints(type(section))[key]
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    base = next(arg for arg in args if arg is not type(None)) if optional else hint
    return _FieldInfo(base, optional, fields[key].metadata.get("choices", ()))


@functools.cache
def _section_hints(section_type: type) -> dict[str, Any]:
    return typing.get_type_hints(section_type)


def _check_value(name: str, spec: _FieldInfo, value: Any) -> Any:
    base, optional = spec.base, spec.optional
    if value is None and optional:
        return None
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    origin = typing.get_origin(base)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a table of key = value, got {value!r}")
    elif origin is list:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{name} must be a list of strings, got {value!r}")
    elif not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise ConfigError(f"{name} must be {base.__name__}, got {value!r}")
    if spec.choices and value not in spec.choices:
        options = ", ".join(map(str, spec.choices))
        raise ConfigError(f"{name} must be one of {options}; got {value!r}")
    return value


def _parse_assignments(name: str, raw: str) -> dict[str, Any]:
    """``"a=1,b=x"`` -> ``{"a": 1, "b": "x"}`` (values read as TOML literals, else strings)."""
    result: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--{name} takes key=value[,key=value], got {item!r}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        result[key.strip()] = value
    return result


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_string(name: str, spec: _FieldInfo, raw: str | None) -> Any:
    base, optional = spec.base, spec.optional
    if raw is None:
        if base is bool:
            return True
        raise ConfigError(f"--{name} needs a value")
    if optional and raw.lower() in ("none", "null"):
        return None
    if base is bool:
        if raw.lower() not in _TRUE | _FALSE:
            raise ConfigError(f"--{name} must be true or false, got {raw!r}")
        value: Any = raw.lower() in _TRUE
    elif base in (int, float):
        try:
            value = base(raw)
        except ValueError:
            raise ConfigError(f"--{name} must be {base.__name__}, got {raw!r}") from None
    elif typing.get_origin(base) is list:
        value = [item.strip() for item in raw.split(",") if item.strip()]
    elif typing.get_origin(base) is dict:
        value = _parse_assignments(name, raw)
    else:
        value = raw
    return _check_value(f"--{name}", spec, value)
