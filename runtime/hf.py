"""Hugging Face checkpoints: export a trained model as a transformers-loadable folder, import one.

Export writes ``config.json`` (from the model args' ``to_hf()``), safetensors shards (one per
pipeline stage) with ``model.safetensors.index.json`` when there are several, and copies
tokenizer files from ``model.hf_assets_path``. Import reads the folder's checkpoint (one file, or
the shards its index lists: ``runtime.hf_io``), maps the keys through the package's
StateDictAdapter and loads them into the (sharded) model parts.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)

from runtime.config import ConfigError
from runtime.distributed.parallelize import dtype_from_name
from runtime.fp8 import Fp8CheckpointError, dequantize_fp8
from runtime.hf_io import INDEX_FILE, SINGLE_FILE, load_hf_config, load_hf_state_dict

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)
# Dimensions that must agree between an imported HF config and the training flavor.
_CHECKED_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
)


def _full_state_dict(model_parts: list[nn.Module], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """This rank's parts gathered to full CPU tensors (a collective over dp and tp)."""
    options = StateDictOptions(full_state_dict=True)
    merged: dict[str, torch.Tensor] = {}
    for part in model_parts:
        for key, value in get_model_state_dict(part, options=options).items():
            # One copy (also when already CPU and dtype): tied weights get their own storage.
            merged[key] = value.detach().to("cpu", dtype, copy=True).contiguous()
    return merged


def hf_config(model_args: Any, base_config: dict[str, Any] | None, dtype: str) -> dict[str, Any]:
    """The ``config.json`` for ``model_args``: the package's ``hf_config.json`` with the args'
    dimensions (``model_args.to_hf()``) on top."""
    config = dict(base_config or {})
    if hasattr(model_args, "to_hf"):
        dimensions = model_args.to_hf()
        if "rope_parameters" in dimensions:
            # Drop the older rope fields so they cannot contradict the new ones.
            config.pop("rope_scaling", None)
            config.pop("rope_theta", None)
        config.update(dimensions)
    config["torch_dtype"] = dtype
    config.pop("dtype", None)
    return config


def _is_stage_writer(parallel_dims: Any) -> bool:
    """One rank per pipeline stage writes: the first of its dp x tp group."""
    mesh = parallel_dims.world_mesh
    names = mesh.mesh_dim_names or ()
    return all(mesh.get_local_rank(name) == 0 for name in names if name != "pp")


def export_hf(
    model_parts: list[nn.Module],
    adapter: Any,
    model_args: Any,
    parallel_dims: Any,
    out_dir: Path,
    dtype_name: str = "float32",
    base_config: dict[str, Any] | None = None,
    assets_path: str = "",
) -> Path:
    """Write a transformers-loadable folder to ``out_dir``; collective, call on every rank."""
    state = adapter.to_hf(_full_state_dict(model_parts, dtype_from_name(dtype_name)))
    pp_rank = parallel_dims.pp_mesh.get_local_rank() if parallel_dims.pp_enabled else 0
    pp_size = parallel_dims.pp
    filename = (
        SINGLE_FILE if pp_size == 1 else f"model-{pp_rank + 1:05d}-of-{pp_size:05d}.safetensors"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    if _is_stage_writer(parallel_dims):
        save_file(state, str(out_dir / filename), metadata={"format": "pt"})
    key_lists: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(key_lists, (filename, sorted(state)))
    if dist.get_rank() == 0:
        _write_metadata(
            out_dir, key_lists, hf_config(model_args, base_config, dtype_name), assets_path
        )
    dist.barrier()
    return out_dir


def _write_metadata(out_dir: Path, key_lists: list, config: dict, assets_path: str) -> None:
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    weight_map = {key: filename for filename, keys in key_lists for key in keys}
    if len({filename for filename, _ in key_lists}) > 1:
        index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    if assets_path:
        for name in _TOKENIZER_FILES:
            source = Path(assets_path) / name
            if source.is_file():
                shutil.copy2(source, out_dir / name)


def read_hf_folder(
    folder: Path, progress: Callable[[int, int, Path], None] | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config.json dict or {}, all tensors of the folder's checkpoint)``, FP8 block-quantized
    weights dequantized (:mod:`runtime.fp8`); ``progress`` as
    :func:`runtime.hf_io.load_hf_state_dict` takes it."""
    config = load_hf_config(folder) if (folder / "config.json").is_file() else {}
    try:
        tensors = load_hf_state_dict(folder, progress)
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from None
    try:
        tensors = dequantize_fp8(tensors, config)  # FP8 block-quantized weights (DeepSeek-V3)
    except Fp8CheckpointError as error:
        raise ConfigError(f"HF checkpoint {folder}: {error}") from None
    return config, tensors


def check_hf_config(config: dict[str, Any], model_args: Any, flavor: str) -> None:
    """Refuse an HF folder whose dimensions differ from the training flavor's."""
    if not config or not hasattr(model_args, "to_hf"):
        return
    expected = model_args.to_hf()
    for key in _CHECKED_FIELDS:
        if key in config and key in expected and config[key] != expected[key]:
            raise ConfigError(
                f"HF checkpoint {key}={config[key]} differs from flavor '{flavor}' "
                f"({expected[key]}); pick the matching model.flavor"
            )


def import_hf(
    model_parts: list[nn.Module],
    adapter: Any,
    folder: Path,
    model_args: Any,
    flavor: str,
    progress: Callable[[int, int, Path], None] | None = None,
) -> None:
    """Load an HF folder's weights into the model parts (every rank reads the files; the
    config's dimensions are checked against the flavor before any tensor is read)."""
    if (folder / "config.json").is_file():
        check_hf_config(load_hf_config(folder), model_args, flavor)
    _config, tensors = read_hf_folder(folder, progress)
    state = adapter.from_hf(tensors)
    options = StateDictOptions(full_state_dict=True, strict=False)
    for part in model_parts:
        keys = set(get_model_state_dict(part))
        own = {key: value for key, value in state.items() if key in keys}
        missing = keys - set(own)
        if missing:
            raise ConfigError(f"HF checkpoint {folder} lacks {sorted(missing)[0]} (and maybe more)")
        set_model_state_dict(part, own, options=options)
