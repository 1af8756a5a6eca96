"""The package's ``config_registry.py``: the torchtitan 0.3.0 bridge.

One config function per ``train_configs/*.toml`` (named after the file), with the same values
as those TOML templates print (tests/test_torchtitan.py compares them field by field).
"""

from __future__ import annotations

from dataclasses import dataclass

from scaffolder.spec import ArchSpec


@dataclass(frozen=True)
class ConfigFunction:
    """A ``Trainer.Config`` function mirroring one TOML file."""

    name: str  # the TOML file's stem
    doc: str
    flavor: str
    dump_folder: str
    lr: float
    weight_decay: float
    warmup_steps: int
    decay_type: str
    min_lr_factor: float
    local_batch_size: int
    global_batch_size: int
    seq_len: int
    steps: int
    mixed_precision_param: str
    checkpoint_enable: bool
    checkpoint_interval: int
    last_save_in_hf: bool
    selective_ac: bool
    compile: bool
    log_freq: int
    enable_tensorboard: bool


@dataclass(frozen=True)
class TorchtitanView:
    configs: tuple[ConfigFunction, ...]
    has_experts: bool
    aux_loss_coef: float  # router_aux_loss_coef (MoE only)
    balancing: str = "none"  # [moe] load_balancing of the TOMLs (MoE only)


def torchtitan_view(spec: ArchSpec, package_name: str) -> TorchtitanView:
    """The config functions of ``package_name``'s two TOML files."""
    debug = ConfigFunction(
        name="debug_model",
        doc="Debug run: small dims, same features, fp32, mock data (debug_model.toml).",
        flavor="debugmodel",
        dump_folder=f"./outputs/{package_name}_debug",
        lr=8e-4,
        weight_decay=0.1,
        warmup_steps=2,
        decay_type="linear",
        min_lr_factor=0.0,
        local_batch_size=4,
        global_batch_size=8,
        seq_len=128,
        steps=10,
        mixed_precision_param="float32",
        checkpoint_enable=False,
        checkpoint_interval=5,
        last_save_in_hf=False,
        selective_ac=False,
        compile=False,
        log_freq=1,
        enable_tensorboard=False,
    )
    full = ConfigFunction(
        name=package_name,
        doc=f"Full-size {spec.size_name} continued pretraining ({package_name}.toml).",
        flavor=spec.size_name,
        dump_folder=f"./outputs/{package_name}",
        lr=3e-4,
        weight_decay=0.1,
        warmup_steps=200,
        decay_type="cosine",
        min_lr_factor=0.1,
        local_batch_size=4,
        global_batch_size=-1,
        seq_len=min(spec.max_seq_len, 8192),
        steps=1000,
        mixed_precision_param=spec.torch_dtype,
        checkpoint_enable=True,
        checkpoint_interval=500,
        last_save_in_hf=True,
        selective_ac=True,
        compile=True,
        log_freq=10,
        enable_tensorboard=True,
    )
    moe = spec.features.moe
    return TorchtitanView(
        configs=(debug, full),
        has_experts=moe is not None,
        aux_loss_coef=float(moe.aux_loss_coef) if moe is not None else 0.0,
        balancing=moe.balancing if moe is not None else "none",
    )
