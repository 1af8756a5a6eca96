"""Hugging Face checkpoints: export a trained model as a transformers-loadable folder, import one.

Export writes ``config.json`` (from the model args' ``to_hf()``), safetensors shards (one per
writing rank: the checkpoint tensors are split among the ranks of each pipeline stage) with
``model.safetensors.index.json`` when there are several, and copies tokenizer files from
``model.hf_assets_path``. Import reads, on each rank, only the slices of the folder's checkpoint
tensors that its (sharded) model parts hold, mapping keys and layouts through the package's
StateDictAdapter. Neither materializes the whole model on any rank (``runtime.hf_shards``).
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
from torch.distributed.checkpoint.state_dict import get_model_state_dict

from runtime.config import ConfigError
from runtime.distributed.parallelize import dtype_from_name
from runtime.fp8 import Fp8CheckpointError, dequantize_fp8
from runtime.hf_io import (
    INDEX_FILE,
    SINGLE_FILE,
    checkpoint_files,
    load_hf_config,
    load_hf_state_dict,
)
from runtime.hf_shards import (
    assign_groups,
    block_holders,
    export_groups,
    gather_to,
    load_local_shards,
    local_box,
)
from runtime.mxfp4 import Mxfp4CheckpointError

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


def _stage_group(parallel_dims: Any) -> tuple[int, int]:
    """(this rank's index, size) of its pipeline stage's group: the ranks of every other mesh
    dimension (dp x tp x ...), which hold the same keys."""
    mesh = parallel_dims.world_mesh
    names = [name for name in mesh.mesh_dim_names or () if name != "pp"]
    index, size = 0, 1
    for name in names:
        index = index * mesh[name].size() + mesh.get_local_rank(name)
        size *= mesh[name].size()
    return index, size


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
    """Write a transformers-loadable folder to ``out_dir``; collective, call on every rank.

    No rank holds the whole model: the checkpoint tensors are split among the ranks of each
    pipeline stage (``runtime.hf_shards``); the other ranks send their blocks of a group of
    tensors to its owner, which converts it (``to_hf``), casts it to ``dtype_name`` (but the
    adapter's ``float32_keys``) and keeps it; each owner writes one safetensors file, rank 0 the
    index.
    """
    dtype = dtype_from_name(dtype_name)
    index, size = _stage_group(parallel_dims)
    stage = parallel_dims.pp_mesh.get_local_rank() if parallel_dims.pp_enabled else 0
    state = {key: v for part in model_parts for key, v in get_model_state_dict(part).items()}
    boxes = {key: local_box(value) for key, value in state.items()}
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, (stage, index, boxes))
    # The ranks of this stage: their blocks of each key, and their index in the stage's group.
    peers = [(rank, blocks) for rank, (at, _, blocks) in enumerate(everyone) if at == stage]
    rank_of = {i: rank for rank, (at, i, _) in enumerate(everyone) if at == stage}
    metas = {key: torch.empty(v.shape, dtype=dtype, device="meta") for key, v in state.items()}
    groups = export_groups(adapter, metas)
    mine: dict[str, torch.Tensor] = {}
    for group, owner in zip(groups, assign_groups(groups, metas, size), strict=True):
        full = {}
        for key in group:
            value = gather_to(state[key], rank_of[owner], block_holders(key, peers))
            if value is not None:
                full[key] = value
        if full:
            for key, value in adapter.to_hf(full).items():
                value = value.to(adapter.hf_dtype(key, dtype)).contiguous()
                # A view (of a tensor another key may share) gets its own storage.
                mine[key] = value.clone() if value._base is not None else value
    key_lists: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(key_lists, sorted(mine))
    writers = [rank for rank, keys in enumerate(key_lists) if keys]
    rank = dist.get_rank()
    filenames = {
        writer: SINGLE_FILE
        if len(writers) == 1
        else f"model-{number:05d}-of-{len(writers):05d}.safetensors"
        for number, writer in enumerate(writers, start=1)
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    if mine:
        save_file(mine, str(out_dir / filenames[rank]), metadata={"format": "pt"})
    sizes: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(sizes, sum(t.numel() * t.element_size() for t in mine.values()))
    del mine
    if rank == 0:
        shards = [(filenames[writer], key_lists[writer]) for writer in writers]
        config = hf_config(model_args, base_config, dtype_name)
        _write_metadata(out_dir, shards, config, assets_path, total_size=sum(sizes))
    dist.barrier()
    return out_dir


def _write_metadata(
    out_dir: Path, shards: list, config: dict, assets_path: str, total_size: int
) -> None:
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    weight_map = {key: filename for filename, keys in shards for key in keys}
    if len(shards) > 1:
        metadata = {"total_size": total_size}
        index = {"metadata": metadata, "weight_map": dict(sorted(weight_map.items()))}
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
    :func:`runtime.hf_io.load_hf_state_dict` takes it. Whole: for tools and tests; the
    trainer's import reads only each rank's slices (:func:`import_hf`)."""
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
    """Load an HF folder's weights into the model parts: each rank reads only the slices of the
    checkpoint tensors its (sharded) parts hold (``runtime.hf_shards``); the config's dimensions
    are checked against the flavor before any tensor is read. ``progress(index, count, file)``
    is called before each file is first read."""
    try:
        files = checkpoint_files(folder)
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from None
    config = load_hf_config(folder) if (folder / "config.json").is_file() else {}
    check_hf_config(config, model_args, flavor)

    def missing(key: str, why: str = "") -> ConfigError:
        if why:
            return ConfigError(f"HF checkpoint {folder}: {key} {why}; pick the matching flavor")
        return ConfigError(f"HF checkpoint {folder} lacks {key} (and maybe more)")

    try:
        load_local_shards(model_parts, adapter, files, config, missing, progress)
    except (Fp8CheckpointError, Mxfp4CheckpointError) as error:
        raise ConfigError(f"HF checkpoint {folder}: {error}") from None
