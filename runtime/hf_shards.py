"""Sharded Hugging Face checkpoint I/O: every rank reads and writes only its share.

Import: each model tensor's local shard (its DTensor placements give the global offsets of the
rows and columns this rank holds) is read straight from the safetensors files with
``safe_open(...).get_slice(name)[a:b, c:d]``. Which checkpoint tensors make a model tensor, and
how, the runtime learns from the package's StateDictAdapter without knowing the family:

- ``from_hf`` is run on *meta* tensors (shapes and dtypes from the files' headers, no data),
  one checkpoint key at a time. A model tensor that comes out as the very same meta tensor is a
  rename: its slice is read as it is. One that comes out as a view of it (a split of a fused
  tensor, a transpose, a per-head reshape) has the view's strides and offset: the rank reads the
  checkpoint rows the view's slice touches and takes the view of them. Anything else (a copy, a
  computed tensor) is made by ``from_hf`` from the whole checkpoint tensor, read on its own.
- Per-expert tensors that ``from_hf`` stacks into one ``[experts, ...]`` weight are named by the
  adapter's optional ``stacked_sources(hf_keys)`` (our stacked key -> checkpoint keys, expert
  by expert): a rank reads only its experts' tensors (and their slices). An adapter without it
  gets the unattributed keys' ``from_hf`` in one go (correct, not sharded).

No rank reads the whole checkpoint; none holds more than one checkpoint tensor beyond its shards.

Export: the model's tensors are grouped by the checkpoint tensors ``to_hf`` makes of them (run on
meta: a fused q/k/v is one group), each group is assigned to one rank of its pipeline stage
(balanced by bytes), gathered one group at a time (``full_tensor``), converted by its owner and
kept; every rank that owns something writes one safetensors file, rank 0 the index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class Source:
    """How one model tensor is made from the checkpoint.

    ``kind``: ``"direct"`` (``keys[0]`` as it is), ``"view"`` (a view of ``keys[0]`` with
    ``view`` = (shape, stride, storage offset)), ``"stack"`` (``keys`` stacked along a new dim 0)
    or ``"convert"`` (``from_hf`` of the whole ``keys``).
    """

    kind: str
    keys: tuple[str, ...]
    shape: tuple[int, ...]
    view: tuple[tuple[int, ...], tuple[int, ...], int] | None = None


def checkpoint_metas(files: dict[str, Path]) -> dict[str, torch.Tensor]:
    """Meta tensors (shape, dtype) of every checkpoint key, from the files' headers."""
    metas: dict[str, torch.Tensor] = {}
    for path in sorted(set(files.values())):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                piece = handle.get_slice(key)
                dtype = _DTYPES.get(piece.get_dtype(), torch.float32)
                metas[key] = torch.empty(piece.get_shape(), dtype=dtype, device="meta")
    return metas


def plan_sources(
    adapter: Any, metas: dict[str, torch.Tensor], wanted: set[str]
) -> dict[str, Source]:
    """The :class:`Source` of every ``wanted`` model key that the checkpoint can make."""
    stacks = adapter.stacked_sources(list(metas)) if hasattr(adapter, "stacked_sources") else {}
    stacked = {key for keys in stacks.values() for key in keys}
    plan: dict[str, Source] = {}
    for name, keys in stacks.items():
        if name in wanted:
            shape = (len(keys), *metas[keys[0]].shape)
            plan[name] = Source("stack", tuple(keys), shape)
    unattributed: dict[str, torch.Tensor] = {}
    for key, meta in metas.items():
        if key in stacked:
            continue
        try:
            produced = adapter.from_hf({key: meta})
        except (KeyError, IndexError, ValueError, RuntimeError):
            produced = {}  # needs other tensors too (an adapter's own stacking or tying)
        if not produced:
            unattributed[key] = meta
        for name, out in produced.items():
            if name in wanted and name not in plan:
                plan[name] = _classify(key, meta, out)
    missing = wanted - set(plan)
    if missing and unattributed:
        produced = adapter.from_hf(unattributed)
        for name in missing & set(produced):
            plan[name] = Source("convert", tuple(unattributed), tuple(produced[name].shape))
    return plan


def _classify(key: str, meta: torch.Tensor, out: Any) -> Source:
    shape = tuple(out.shape)
    if out is meta:
        return Source("direct", (key,), shape)
    if isinstance(out, torch.Tensor) and out.device.type == "meta" and out._base is meta:
        return Source("view", (key,), shape, (shape, tuple(out.stride()), out.storage_offset()))
    return Source("convert", (key,), shape)


def local_box(value: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(local shape, global offset) of this rank's shard of ``value`` (whole if not a DTensor)."""
    if isinstance(value, DTensor):
        return compute_local_shape_and_global_offset(
            value.shape, value.device_mesh, value.placements
        )
    return tuple(value.shape), (0,) * value.dim()


class SliceReader:
    """Reads slices of checkpoint tensors (one ``safe_open`` per read, so no file stays mapped
    and the pages read do not pile up in the process)."""

    def __init__(self, files: dict[str, Path], adapter: Any):
        self.files = files
        self.adapter = adapter
        self._converted: tuple[tuple[str, ...], dict[str, Any]] | None = None

    def _slice(self, key: str, box: tuple[slice, ...]) -> torch.Tensor:
        with safe_open(str(self.files[key]), framework="pt") as handle:
            if not box:
                return handle.get_tensor(key)
            return handle.get_slice(key)[box]

    def read(self, name: str, source: Source, shape, offset) -> torch.Tensor:
        """The ``shape`` block at ``offset`` of model tensor ``name``."""
        box = tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))
        if source.kind == "direct":
            return self._slice(source.keys[0], box)
        if source.kind == "stack":
            experts = source.keys[box[0]] if box else source.keys
            return torch.stack([self._slice(key, box[1:]) for key in experts])
        if source.kind == "view":
            return self._read_view(source, shape, offset)
        return self._convert(name, source)[box]

    def _read_view(self, source: Source, shape, offset) -> torch.Tensor:
        """The block of a strided view of one checkpoint tensor: read the rows it touches."""
        _, stride, base_offset = source.view
        key = source.keys[0]
        if math.prod(shape) == 0:
            return torch.empty(shape)
        start = base_offset + sum(o * s for o, s in zip(offset, stride, strict=True))
        last = start + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
        with safe_open(str(self.files[key]), framework="pt") as handle:
            piece = handle.get_slice(key)
            full_shape = piece.get_shape()
            if not full_shape:
                return handle.get_tensor(key).as_strided(shape, stride, start)
            row = math.prod(full_shape[1:])
            first_row, end_row = start // row, last // row + 1
            rows = piece[first_row:end_row].contiguous()
        return rows.reshape(-1).as_strided(shape, stride, start - first_row * row)

    def _convert(self, name: str, source: Source) -> torch.Tensor:
        if self._converted is None or self._converted[0] != source.keys:
            pieces = {key: self._slice(key, ()) for key in source.keys}
            self._converted = (source.keys, self.adapter.from_hf(pieces))
        return self._converted[1][name]


def load_local_shards(
    model_parts: list[torch.nn.Module],
    adapter: Any,
    files: dict[str, Path],
    missing_error: Any,
) -> None:
    """Fill every model part's (local shards of) parameters and buffers from the checkpoint.

    ``missing_error(key)`` makes the exception for a model key the checkpoint cannot make.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    states = [get_model_state_dict(part) for part in model_parts]
    wanted = {key for state in states for key in state}
    plan = plan_sources(adapter, checkpoint_metas(files), wanted)
    reader = SliceReader(files, adapter)
    with torch.no_grad():
        for state in states:
            for name, value in state.items():
                if name not in plan:
                    raise missing_error(name)
                source = plan[name]
                if tuple(source.shape) != tuple(value.shape):
                    raise missing_error(
                        name, f"has shape {list(source.shape)}, the model {list(value.shape)}"
                    )
                shape, offset = local_box(value)
                local = value.to_local() if isinstance(value, DTensor) else value
                local.copy_(reader.read(name, source, shape, offset).reshape(local.shape))


def export_groups(adapter: Any, metas: dict[str, torch.Tensor]) -> list[list[str]]:
    """The model keys grouped by the checkpoint tensors ``to_hf`` makes of them (in the state
    dict's order); keys ``to_hf`` leaves out (tied weights, buffers) are in no group."""
    owner: dict[str, int] = {}  # checkpoint key -> group
    groups: list[list[str]] = []
    for key, meta in metas.items():
        produced = set(adapter.to_hf({key: meta}))
        if not produced:
            continue
        joined = sorted({owner[name] for name in produced if name in owner})
        if not joined:
            groups.append([key])
            index = len(groups) - 1
        else:
            index = joined[0]
            groups[index].append(key)
            for other in joined[1:]:  # this key ties earlier groups together
                groups[index].extend(groups[other])
                groups[other] = []
        for name, group in owner.items():
            if group in joined:
                owner[name] = index
        owner.update(dict.fromkeys(produced, index))
    return [group for group in groups if group]


def assign_groups(groups: list[list[str]], metas: dict[str, torch.Tensor], ranks: int) -> list:
    """Each group's writer among ``ranks``: the one with the fewest bytes so far, in order."""
    loads = [0] * ranks
    owners = []
    for group in groups:
        rank = loads.index(min(loads))
        owners.append(rank)
        loads[rank] += sum(metas[key].numel() * metas[key].element_size() for key in group)
    return owners
