"""Megatron-LM argument names -> the runtime's config sections and the packages' ModelArgs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runtime.primus.errors import PrimusConfigError
from runtime.primus.experiment import ResolvedModule

# (Megatron field, runtime section, runtime key, expected type) for one-to-one renames.
_RENAMES: tuple[tuple[str, str, str, type], ...] = (
    ("seq_length", "training", "seq_len", int),
    ("micro_batch_size", "training", "local_batch_size", int),
    ("global_batch_size", "training", "global_batch_size", int),
    ("train_iters", "training", "steps", int),
    ("seed", "training", "seed", int),
    ("clip_grad", "training", "max_norm", float),
    ("lr", "optimizer", "lr", float),
    ("weight_decay", "optimizer", "weight_decay", float),
    ("adam_beta1", "optimizer", "beta1", float),
    ("adam_beta2", "optimizer", "beta2", float),
    ("adam_eps", "optimizer", "eps", float),
    ("lr_warmup_iters", "lr_scheduler", "warmup_steps", int),
    ("tensor_model_parallel_size", "parallelism", "tensor_parallel_degree", int),
    ("pipeline_model_parallel_size", "parallelism", "pipeline_parallel_degree", int),
    ("expert_model_parallel_size", "parallelism", "expert_parallel_degree", int),
    ("save_interval", "checkpoint", "interval", int),
    ("log_interval", "metrics", "log_freq", int),
)

# Megatron fields that describe the model architecture (returned under "architecture").
ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "num_layers",
    "hidden_size",
    "ffn_hidden_size",
    "num_attention_heads",
    "group_query_attention",
    "num_query_groups",
    "kv_channels",
    "max_position_embeddings",
    "vocab_size",
    "layernorm_epsilon",
    "normalization",
    "layernorm_zero_centered_gamma",
    "qk_layernorm",
    "swiglu",
    "position_embedding_type",
    "rotary_base",
    "rotary_percent",
    "rotary_interleaved",
    "use_rope_scaling",
    "untie_embeddings_and_output_weights",
    "add_qkv_bias",
    "add_bias_linear",
    "hidden_dropout",
    "attention_dropout",
    "init_method_std",
)


# Megatron-LM's llama3 rope scaling: only the factor is an argument (--rope-scaling-factor,
# default 8.0); the other three are fixed in its RotaryEmbedding. Keys are ModelArgs names.
MEGATRON_LLAMA3_ROPE: dict[str, float | int] = {
    "rope_factor": 8.0,
    "rope_low_freq_factor": 1.0,
    "rope_high_freq_factor": 4.0,
    "rope_original_max_seq_len": 8192,
}


def _typed(params: Mapping[str, Any], key: str, kind: type) -> Any:
    """``params[key]`` checked against ``kind`` (int, float or bool); bools are not numbers."""
    value = params[key]
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise PrimusConfigError(f"{key}: expected {kind.__name__}, got {value!r}")
    return float(value) if kind is float else value


def _present(params: Mapping[str, Any], key: str) -> bool:
    """Whether ``key`` is set to something other than null (Megatron's "unset")."""
    return params.get(key) is not None


def _flag(params: Mapping[str, Any], key: str) -> bool:
    """A boolean field; unset or null counts as false."""
    return _present(params, key) and _typed(params, key, bool)


def _map_training_extras(params: Mapping[str, Any], sections: dict, notes: list[str]) -> None:
    """Data source and precision."""
    if _flag(params, "mock_data"):
        sections["training"]["dataset"] = "mock"
    else:
        for key in ("data_path", "train_data_path"):
            if _present(params, key):
                notes.append(
                    f"{key}: Megatron indexed datasets are not readable by the runtime; "
                    "set training.dataset"
                )
    bf16, fp16 = _flag(params, "bf16"), _flag(params, "fp16")
    if bf16 and fp16:
        raise PrimusConfigError("bf16 and fp16 are both true")
    if _present(params, "bf16") or _present(params, "fp16"):
        precision = "bfloat16" if bf16 else "float16" if fp16 else "float32"
        sections["training"]["mixed_precision_param"] = precision


def _map_optimizer(params: Mapping[str, Any], sections: dict, notes: list[str]) -> None:
    """Optimizer name, LR schedule shape, warmup fraction, minimum LR."""
    optimizer = params.get("optimizer")
    if optimizer == "adam":
        # Megatron's "adam" applies decoupled weight decay: AdamW.
        sections["optimizer"]["name"] = "AdamW"
    elif optimizer is not None:
        notes.append(f"optimizer: {optimizer!r} has no runtime equivalent (AdamW only)")

    schedule = sections["lr_scheduler"]
    style = params.get("lr_decay_style")
    if style in ("linear", "cosine"):
        schedule["decay_type"] = style
    elif style == "constant":
        schedule["decay_ratio"] = 0.0
    elif style == "WSD":
        wsd_style = params.get("lr_wsd_decay_style")
        if wsd_style in ("linear", "cosine"):
            schedule["decay_type"] = wsd_style
        elif wsd_style is not None:
            notes.append(f"lr_wsd_decay_style: {wsd_style!r} has no runtime equivalent")
        if _present(params, "lr_wsd_decay_iters") and _present(params, "train_iters"):
            decay_iters = _typed(params, "lr_wsd_decay_iters", int)
            schedule["decay_ratio"] = decay_iters / _typed(params, "train_iters", int)
    elif style is not None:
        notes.append(f"lr_decay_style: {style!r} has no runtime equivalent")

    if _present(params, "lr_warmup_fraction"):
        # Megatron prefers the fraction (of the decay horizon) over lr_warmup_iters.
        horizon_key = "lr_decay_iters" if _present(params, "lr_decay_iters") else "train_iters"
        if _present(params, horizon_key):
            fraction = _typed(params, "lr_warmup_fraction", float)
            schedule["warmup_steps"] = round(fraction * _typed(params, horizon_key, int))
    if _present(params, "lr_decay_iters") and _present(params, "train_iters"):
        if _typed(params, "lr_decay_iters", int) != _typed(params, "train_iters", int):
            notes.append(
                "lr_decay_iters: the runtime decays over the remaining train_iters, "
                "not a separate horizon"
            )
    if _present(params, "min_lr") and _present(params, "lr"):
        lr = _typed(params, "lr", float)
        if lr > 0:
            schedule["min_lr_factor"] = _typed(params, "min_lr", float) / lr


def _map_moe(params: Mapping[str, Any], sections: dict, notes: list[str]) -> None:
    """A mixture of experts' load balancing: the aux loss and its coefficient, or expert bias."""
    if not _present(params, "num_experts"):
        return
    moe = sections["moe"]
    kind = params.get("moe_router_load_balancing_type")
    kind = kind[0] if isinstance(kind, list) and len(kind) == 1 else kind
    if kind in ("aux_loss", "none"):
        moe["load_balancing"] = kind
    elif kind is not None:
        notes.append(f"moe_router_load_balancing_type: {kind!r} has no runtime equivalent")
    coef = params.get("moe_aux_loss_coeff")
    coef = coef[0] if isinstance(coef, list) and len(coef) == 1 else coef
    if isinstance(coef, int | float) and not isinstance(coef, bool):
        moe["aux_loss_coef"] = float(coef)
    elif coef is not None:
        raise PrimusConfigError(f"moe_aux_loss_coeff: expected a number, got {coef!r}")
    if _flag(params, "moe_router_enable_expert_bias"):
        moe["load_balancing"] = "expert_bias"
        if _present(params, "moe_router_bias_update_rate"):
            moe["expert_bias_update_rate"] = _typed(params, "moe_router_bias_update_rate", float)


def _map_parallel_and_io(params: Mapping[str, Any], sections: dict, notes: list[str]) -> None:
    """Pipeline schedule, checkpointing, activation recomputation."""
    if _present(params, "pipeline_model_parallel_size"):
        if _typed(params, "pipeline_model_parallel_size", int) > 1:
            virtual = _present(params, "num_layers_per_virtual_pipeline_stage") or _present(
                params, "num_virtual_stages_per_pipeline_rank"
            )
            schedule = "Interleaved1F1B" if virtual else "1F1B"
            sections["parallelism"]["pipeline_parallel_schedule"] = schedule

    if "save" in params:
        save = params["save"]
        if save is not None and not isinstance(save, str):
            raise PrimusConfigError(f"save: expected a folder name or null, got {save!r}")
        sections["checkpoint"]["enable"] = save is not None
        if save is not None:
            sections["checkpoint"]["folder"] = save
    if _present(params, "load"):
        notes.append("load: Megatron checkpoints are not readable by the runtime")
    if _present(params, "context_parallel_size"):
        if _typed(params, "context_parallel_size", int) > 1:
            notes.append("context_parallel_size: the runtime has no context parallelism")

    if "recompute_granularity" in params:
        granularity = params["recompute_granularity"]
        modes = {None: "none", "full": "full", "selective": "selective"}
        if granularity not in modes:
            raise PrimusConfigError(
                f"recompute_granularity: expected full, selective or null, got {granularity!r}"
            )
        sections["activation_checkpoint"]["mode"] = modes[granularity]


_MODEL_ARG_RENAMES: tuple[tuple[str, str, type], ...] = (
    ("vocab_size", "vocab_size", int),
    ("hidden_size", "dim", int),
    ("num_layers", "n_layers", int),
    ("num_attention_heads", "n_heads", int),
    ("ffn_hidden_size", "ffn_dim", int),
    ("max_position_embeddings", "max_seq_len", int),
    ("rotary_base", "rope_theta", float),
    ("init_method_std", "initializer_range", float),
)

# (Megatron field, "the runtime cannot build this value" predicate, why) -> a note when true.
_UNSUPPORTED: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("normalization", lambda v: v != "RMSNorm", "the runtime models use RMSNorm"),
    ("swiglu", lambda v: v is not True, "the runtime models use a SwiGLU MLP"),
    ("position_embedding_type", lambda v: v != "rope", "the runtime models use rotary"),
    ("rotary_percent", lambda v: v != 1.0, "the runtime rotates the full head_dim"),
    ("rotary_interleaved", lambda v: v is True, "the runtime uses the half-split layout"),
    ("qk_layernorm", lambda v: v is True, "the runtime models have no q/k norm"),
    (
        "layernorm_zero_centered_gamma",
        lambda v: v is True,
        "the runtime models have no 1+gamma norm",
    ),
    ("hidden_dropout", lambda v: v != 0, "the runtime models have no dropout"),
    ("attention_dropout", lambda v: v != 0, "the runtime models have no dropout"),
)


def _map_heads(params: Mapping[str, Any], args: dict[str, Any]) -> None:
    """n_kv_heads from num_query_groups (under group_query_attention), head_dim from kv_channels."""
    if "n_heads" not in args:
        return
    if _flag(params, "group_query_attention"):
        if not _present(params, "num_query_groups"):
            raise PrimusConfigError("group_query_attention is true but num_query_groups is unset")
        args["n_kv_heads"] = _typed(params, "num_query_groups", int)
    else:
        args["n_kv_heads"] = args["n_heads"]
    if _present(params, "kv_channels"):
        args["head_dim"] = _typed(params, "kv_channels", int)
    elif "dim" in args:
        args["head_dim"] = args["dim"] // args["n_heads"]


# Megatron-LM's defaults for keys that reach no GPT model (a flag name Primus drops, an argument
# no non-legacy code reads): set to these, such a key changes nothing (Primus's own
# language_model.yaml sets both), so only another value is noted.
_INERT_DEFAULTS: dict[str, float] = {
    "norm_epsilon": 1e-5,  # --norm-epsilon's default (its dest is layernorm_epsilon)
    "rope_scaling_factor": MEGATRON_LLAMA3_ROPE["rope_factor"],  # fixed in RotaryEmbedding
}


def _inert(params: Mapping[str, Any], key: str) -> bool:
    """Whether ``key`` is unset, or set to the default that changes nothing."""
    return not _present(params, key) or params[key] == _INERT_DEFAULTS.get(key, object())


def _map_norm_eps(params: Mapping[str, Any], args: dict[str, Any], notes: list[str]) -> None:
    """norm_eps from layernorm_epsilon, the dest of Megatron-LM's --norm-epsilon."""
    if _present(params, "layernorm_epsilon"):
        args["norm_eps"] = _typed(params, "layernorm_epsilon", float)
    if not _inert(params, "norm_epsilon"):
        notes.append(
            "norm_epsilon is the flag name of layernorm_epsilon, not an argument: Primus drops it"
        )


def _map_biases(params: Mapping[str, Any], args: dict[str, Any], notes: list[str]) -> None:
    """tie_word_embeddings, attention_bias and mlp_bias in the HF sense."""
    if _present(params, "untie_embeddings_and_output_weights"):
        args["tie_word_embeddings"] = not _flag(params, "untie_embeddings_and_output_weights")
    if not (_present(params, "add_bias_linear") or _present(params, "add_qkv_bias")):
        return
    bias_linear, qkv_bias = _flag(params, "add_bias_linear"), _flag(params, "add_qkv_bias")
    # Megatron biases linear_qkv when either flag is set, linear_proj and the MLP only with
    # add_bias_linear; an HF attention_bias covers q, k, v and o together.
    args["attention_bias"] = bias_linear or qkv_bias
    args["mlp_bias"] = bias_linear
    if qkv_bias and not bias_linear:
        notes.append(
            "add_qkv_bias without add_bias_linear: q/k/v get biases but the output "
            "projection does not, which no HF attention_bias setting matches"
        )


def _map_rope(params: Mapping[str, Any], args: dict[str, Any], notes: list[str]) -> None:
    """rope_type: Megatron's GPT model scales rope only by Llama 3's bands, with fixed factors."""
    if params.get("position_embedding_type") != "rope":
        return
    if _flag(params, "use_rope_scaling"):
        args["rope_type"] = "llama3"
        args.update(MEGATRON_LLAMA3_ROPE)
    else:
        args["rope_type"] = "default"
    for key in ("rope_scaling_factor", "rotary_seq_len_interpolation_factor"):
        if not _inert(params, key):
            notes.append(f"{key} reaches no Megatron GPT model (Primus passes it to none); ignored")


def _map_model_args(params: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """Translate the architecture fields into the generated packages' ModelArgs names."""
    args: dict[str, Any] = {}
    for megatron_key, args_key, kind in _MODEL_ARG_RENAMES:
        if _present(params, megatron_key):
            args[args_key] = _typed(params, megatron_key, kind)
    _map_heads(params, args)
    _map_norm_eps(params, args, notes)
    _map_biases(params, args, notes)
    _map_rope(params, args, notes)
    for key, unsupported, reason in _UNSUPPORTED:
        if _present(params, key) and unsupported(params[key]):
            notes.append(f"{key}: {params[key]!r} is not supported ({reason})")
    return args


def megatron_to_runtime(resolved_module: ResolvedModule | Mapping[str, Any]) -> dict[str, Any]:
    """Map a resolved Megatron module (or its ``params`` dict) onto the runtime's config.

    Only fields that are present and not null are mapped, so the runtime's own defaults stand for
    the rest. Returns::

        {
          "sections": {                      # torchtitan-style JobConfig sections
            "training": {seq_len <- seq_length, local_batch_size <- micro_batch_size,
                         global_batch_size, steps <- train_iters, seed, max_norm <- clip_grad,
                         dataset: "mock" <- mock_data: true,
                         mixed_precision_param: "bfloat16" | "float16" | "float32" <- bf16/fp16},
            "optimizer": {name: "AdamW" <- optimizer: adam, lr, weight_decay,
                          beta1/beta2 <- adam_beta1/2, eps <- adam_eps},
            "lr_scheduler": {warmup_steps <- lr_warmup_iters (or lr_warmup_fraction x horizon),
                             decay_type <- lr_decay_style linear | cosine (WSD: its decay style),
                             decay_ratio: 0.0 <- constant (WSD: lr_wsd_decay_iters/train_iters),
                             min_lr_factor <- min_lr / lr},
            "parallelism": {tensor_parallel_degree <- tensor_model_parallel_size,
                            pipeline_parallel_degree <- pipeline_model_parallel_size,
                            pipeline_parallel_schedule: "1F1B" | "Interleaved1F1B" (pp > 1)},
            "checkpoint": {enable <- save is not null, folder <- save, interval <- save_interval},
            "activation_checkpoint": {mode: none | full | selective <- recompute_granularity},
            "metrics": {log_freq <- log_interval},
            "moe": {load_balancing <- moe_router_load_balancing_type aux_loss | none, or
                    expert_bias <- moe_router_enable_expert_bias (rate: _bias_update_rate),
                    aux_loss_coef <- moe_aux_loss_coeff},              # models with experts
          },                                 # every section key is present, possibly empty
          "architecture": {<Megatron name>: value},   # ARCHITECTURE_FIELDS that are set
          "model_args": {                    # the same, in the generated ModelArgs' names
            vocab_size, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, max_seq_len,
            norm_eps, rope_theta, initializer_range <- init_method_std,
            tie_word_embeddings, attention_bias, mlp_bias,       # the package's ARCHITECTURE
            rope_type: "default" | "llama3",                     # when position_embedding_type
            rope_factor,                                         # is rope; llama3 only:
            rope_low_freq_factor, rope_high_freq_factor,         # Megatron's fixed values
            rope_original_max_seq_len,
          },
          "unsupported": [str, ...],         # training settings the runtime cannot honour
                                             # (data_path, load, context_parallel_size > 1, ...)
          "architecture_notes": [str, ...],  # model features the runtime's models lack
                                             # or Megatron cannot express (LayerNorm, dropout,
                                             # q/k/v bias without an output bias, ...)
        }

    Every note is one line naming the field. Section keys are ``runtime.config.JobConfig`` names.

    Raises :class:`PrimusConfigError` for a mapped field of the wrong type or inconsistent
    settings (bf16 and fp16 both true, group_query_attention without num_query_groups).
    """
    params = (
        resolved_module.params
        if isinstance(resolved_module, ResolvedModule)
        else dict(resolved_module)
    )
    sections: dict[str, dict[str, Any]] = {
        name: {}
        for name in (
            "training",
            "optimizer",
            "lr_scheduler",
            "parallelism",
            "checkpoint",
            "activation_checkpoint",
            "metrics",
            "moe",
        )
    }
    unsupported: list[str] = []
    for megatron_key, section, runtime_key, kind in _RENAMES:
        if _present(params, megatron_key):
            sections[section][runtime_key] = _typed(params, megatron_key, kind)
    _map_training_extras(params, sections, unsupported)
    _map_optimizer(params, sections, unsupported)
    _map_parallel_and_io(params, sections, unsupported)
    _map_moe(params, sections, unsupported)
    architecture_notes: list[str] = [
        f"{key}: the model preset's value is shadowed by the module preset's (Primus keeps the "
        "module preset's)"
        for key in getattr(resolved_module, "shadowed", ())
    ]
    model_args = _map_model_args(params, architecture_notes)
    architecture = {key: params[key] for key in ARCHITECTURE_FIELDS if _present(params, key)}
    return {
        "sections": sections,
        "architecture": architecture,
        "model_args": model_args,
        "unsupported": unsupported,
        "architecture_notes": architecture_notes,
    }


# ModelArgs fields that tell one flavor of a package from another.
FLAVOR_FIELDS: tuple[str, ...] = (
    "vocab_size",
    "dim",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "head_dim",
    "ffn_dim",
    "max_seq_len",
    "norm_eps",
    "rope_theta",
)


def match_flavor(flavors: Mapping[str, Any], model_args: Mapping[str, Any]) -> str:
    """The first flavor whose ModelArgs equal ``model_args`` on every FLAVOR_FIELDS key both have.

    ``flavors`` maps flavor names to ModelArgs (a package's ``TrainSpec.model_args``);
    ``model_args`` is ``megatron_to_runtime(...)["model_args"]``. Raises
    :class:`PrimusConfigError` naming the first difference from each flavor when none matches.
    """
    differences = []
    for name, args in flavors.items():
        keys = [key for key in FLAVOR_FIELDS if key in model_args and hasattr(args, key)]
        mismatch = next((key for key in keys if getattr(args, key) != model_args[key]), None)
        if mismatch is None:
            return name
        differences.append(
            f"{name}: {mismatch} {getattr(args, mismatch)!r} vs {model_args[mismatch]!r}"
        )
    raise PrimusConfigError(
        "the model preset matches no flavor of the package (" + "; ".join(differences) + ")"
    )
