"""Read and write transformers-loadable checkpoint folders (config.json + safetensors).

Used by generated packages' tests and by the trainer's HF export/import. Large state dicts are
split into ``model-0000i-of-0000n.safetensors`` shards with a ``model.safetensors.index.json``,
as transformers writes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3


def save_hf_checkpoint(
    hf_state_dict: dict[str, torch.Tensor],
    hf_config: dict[str, Any],
    out_dir: str | Path,
    *,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path:
    """Write ``hf_state_dict`` (transformers' key names) and ``config.json`` into ``out_dir``.

    Tensors must be full (not sharded DTensors); they are made contiguous and cast to ``dtype``
    when given. The config's ``torch_dtype`` records the saved dtype.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        key: (value.to(dtype) if dtype is not None else value).detach().cpu().contiguous()
        for key, value in hf_state_dict.items()
    }
    saved_dtype = next(iter(tensors.values())).dtype if tensors else torch.float32
    config = dict(hf_config)
    config["torch_dtype"] = str(saved_dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shards = _plan_shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(tensors, str(out / SINGLE_FILE), metadata={"format": "pt"})
        return out
    weight_map: dict[str, str] = {}
    for index, keys in enumerate(shards, start=1):
        name = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        save_file({key: tensors[key] for key in keys}, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index_doc = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / INDEX_FILE).write_text(json.dumps(index_doc, indent=2, sort_keys=True) + "\n")
    return out


def _plan_shards(tensors: dict[str, torch.Tensor], max_shard_bytes: int) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    size = 0
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    return shards


def checkpoint_files(folder: str | Path) -> dict[str, Path]:
    """Every tensor key of a transformers checkpoint folder -> the safetensors file holding it
    (reads the index or the single file's header, no tensor data)."""
    folder = Path(folder)
    if (folder / SINGLE_FILE).is_file():
        with safe_open(str(folder / SINGLE_FILE), framework="pt") as handle:
            return dict.fromkeys(handle.keys(), folder / SINGLE_FILE)
    index = folder / INDEX_FILE
    if not index.is_file():
        raise FileNotFoundError(f"{folder} has neither {SINGLE_FILE} nor {INDEX_FILE}")
    weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
    return {key: folder / name for key, name in weight_map.items()}


def load_hf_state_dict(
    folder: str | Path, progress: Callable[[int, int, Path], None] | None = None
) -> dict[str, torch.Tensor]:
    """Load every tensor of a transformers checkpoint folder (single file or sharded).

    ``progress(index, count, file)`` is called before each file is read (1-based index).
    """
    folder = Path(folder)
    if (folder / SINGLE_FILE).is_file():
        files = [folder / SINGLE_FILE]
    else:
        index = folder / INDEX_FILE
        if not index.is_file():
            raise FileNotFoundError(f"{folder} has neither {SINGLE_FILE} nor {INDEX_FILE}")
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        files = [folder / shard for shard in sorted(set(weight_map.values()))]
    state_dict: dict[str, torch.Tensor] = {}
    for number, file in enumerate(files, start=1):
        if progress is not None:
            progress(number, len(files), file)
        state_dict.update(load_file(str(file)))
    return state_dict


def load_hf_config(folder: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a transformers checkpoint folder."""
    return json.loads((Path(folder) / "config.json").read_text())
