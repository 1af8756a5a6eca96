"""Sharded Hugging Face checkpoint I/O: every rank reads and writes only its share.

Import: each model tensor's local shard (its DTensor placements give the global offsets of the
rows and columns this rank holds) is read straight from the safetensors files with
``safe_open(...).get_slice(name)[a:b, c:d]``. Which checkpoint tensors make a model tensor, and
how, the runtime learns from the package's StateDictAdapter without knowing the family:

- ``from_hf`` is run on *meta* tensors (shapes and dtypes from the files' headers, no data).
  A model tensor that comes out as one of those very meta tensors is a rename: its slice is read
  as it is. One that comes out as a view of one (a split of a fused tensor, a transpose, a
  per-head reshape) has the view's strides and offset: the rank reads the checkpoint rows the
  view's slice touches and takes the view of them. Anything else (a copy, a computed tensor) is
  attributed by probing ``from_hf`` one checkpoint key at a time, and made by ``from_hf`` from
  that whole checkpoint tensor, read on its own.
- Per-expert tensors that ``from_hf`` stacks into one ``[experts, ...]`` weight are named by the
  adapter's optional ``stacked_sources(hf_keys)`` (our stacked key -> checkpoint keys, expert
  by expert): a rank reads only its experts' tensors (and their slices). An adapter without it
  gets the unattributed keys' ``from_hf`` in one go (correct, not sharded).

FP8 block-quantized weights (:mod:`runtime.fp8`) are dequantized slice by slice, each with the
scales of the blocks it touches. MXFP4 pairs (:mod:`runtime.mxfp4`) that the adapter's optional
``mxfp4_sources(hf_keys)`` names stand, in the plan, for the float32 tensor ``from_hf`` also
takes in their place (``save_pretrained``'s layout, maybe the pair's transpose): a rank reads the
bytes and scales of just the rows, experts and 32-value groups its slice touches and dequantizes
those. No rank reads the whole checkpoint; none holds more than one checkpoint tensor beyond its
shards.

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

from runtime.fp8 import SCALE_SUFFIX, dequantize_block_slice, fp8_layout
from runtime.mxfp4 import (
    BLOCKS_SUFFIX,
    SCALES_SUFFIX,
    Mxfp4CheckpointError,
    dequantize_mxfp4_slice,
    mxfp4_groups,
    mxfp4_layout,
)

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
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


@dataclass(frozen=True)
class Source:
    """How one model tensor is made from the checkpoint.

    ``kind``: ``"direct"`` (``keys[0]`` as it is), ``"view"`` (a view of ``keys[0]`` with
    ``view`` = (shape, stride, storage offset)), ``"stack"`` (``keys`` stacked along a new dim 0)
    or ``"convert"`` (``from_hf`` of the whole ``keys``, with ``context``'s keys as meta tensors
    beside them: tensors ``from_hf`` needs present but not read, such as a tied embedding).
    """

    kind: str
    keys: tuple[str, ...]
    shape: tuple[int, ...]
    view: tuple[tuple[int, ...], tuple[int, ...], int] | None = None
    context: tuple[str, ...] = ()


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


_PROBE_ERRORS = (KeyError, IndexError, ValueError, RuntimeError)


def plan_sources(
    adapter: Any, metas: dict[str, torch.Tensor], wanted: set[str]
) -> dict[str, Source]:
    """The :class:`Source` of every ``wanted`` model key that the checkpoint can make."""
    stacks = adapter.stacked_sources(list(metas)) if hasattr(adapter, "stacked_sources") else {}
    stacked = {key for keys in stacks.values() for key in keys}
    plan: dict[str, Source] = {}
    for name, keys in stacks.items():
        if name in wanted:
            plan[name] = Source("stack", tuple(keys), (len(keys), *metas[keys[0]].shape))
    # from_hf of everything, on meta: renames come out as the very tensors, views keep their base.
    by_id = {id(meta): key for key, meta in metas.items()}
    made: list[str] = []  # names that are neither: copies or computed tensors
    for name, out in adapter.from_hf(dict(metas)).items():
        if name not in wanted or name in plan:
            continue
        if id(out) in by_id:
            plan[name] = Source("direct", (by_id[id(out)],), tuple(out.shape))
        elif out._base is not None and id(out._base) in by_id:
            view = (tuple(out.shape), tuple(out.stride()), out.storage_offset())
            plan[name] = Source("view", (by_id[id(out._base)],), view[0], view)
        else:
            made.append(name)
    if made:
        plan.update(_attribute(adapter, metas, plan, made, stacked))
    return plan


def _attribute(adapter, metas, plan, made, stacked) -> dict[str, Source]:
    """Sources of the names ``from_hf`` computes: probe it one checkpoint key at a time (beside
    the keys that make several names, such as a tied embedding, which it may need present)."""
    sources = [source.keys[0] for source in plan.values() if source.kind != "stack"]
    anchors = tuple(sorted({key for key in sources if sources.count(key) > 1}))
    context = {key: metas[key] for key in anchors}
    try:
        from_context = set(adapter.from_hf(dict(context)))
    except _PROBE_ERRORS:
        from_context = set()
    found: dict[str, Source] = {}
    silent: list[str] = []  # keys that make nothing on their own (or fail alone)
    for key in metas:
        if key in stacked or key in context:
            continue
        try:
            produced = adapter.from_hf({**context, key: metas[key]})
        except _PROBE_ERRORS:
            produced = {}
        names = [name for name in made if name in produced and name not in from_context]
        if not produced:
            silent.append(key)
        for name in names:
            found.setdefault(
                name, Source("convert", (key,), tuple(produced[name].shape), (), anchors)
            )
    for name in made:
        if name not in found and name in from_context:
            shape = tuple(adapter.from_hf(dict(context))[name].shape)
            found[name] = Source("convert", anchors, shape)
    missing = [name for name in made if name not in found]
    if missing and silent:  # made of several keys together: convert them in one go
        produced = adapter.from_hf({key: metas[key] for key in silent})
        for name in missing:
            if name in produced:
                found[name] = Source("convert", tuple(silent), tuple(produced[name].shape))
    return found


def local_box(value: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(local shape, global offset) of this rank's shard of ``value`` (whole if not a DTensor)."""
    if isinstance(value, DTensor):
        return compute_local_shape_and_global_offset(
            value.shape, value.device_mesh, value.placements
        )
    return tuple(value.shape), (0,) * value.dim()


def dequantized_metas(
    metas: dict[str, torch.Tensor], config: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, int]]]:
    """FP8 block-quantized checkpoints (:mod:`runtime.fp8`): the metas as ``from_hf`` sees them
    once dequantized (float32 weights, no scales), and ``{weight key: block size}``."""
    fp8 = fp8_layout({key: (tuple(m.shape), m.dtype) for key, m in metas.items()}, config)
    if not fp8:
        return metas, fp8
    seen = {
        key: meta.to(torch.float32) if key in fp8 else meta
        for key, meta in metas.items()
        if not key.endswith(SCALE_SUFFIX)
    }
    return seen, fp8


def mxfp4_metas(
    metas: dict[str, torch.Tensor], adapter: Any
) -> tuple[dict[str, torch.Tensor], dict[str, bool]]:
    """MXFP4 checkpoints (:mod:`runtime.mxfp4`): the metas as ``from_hf`` also takes them, each
    pair the adapter's ``mxfp4_sources`` names replaced by its float32 tensor, and ``{key:
    whether that tensor is the transpose of the pair's [..., rows, cols]}``. The pairs are
    checked from the headers (one line for one that does not fit)."""
    sources = adapter.mxfp4_sources(list(metas)) if hasattr(adapter, "mxfp4_sources") else {}
    if not sources:
        return metas, {}
    shapes = {key: (tuple(meta.shape), meta.dtype) for key, meta in metas.items()}
    layout = mxfp4_layout(shapes, sources)
    seen: dict[str, torch.Tensor] = {}
    for key, meta in metas.items():
        name = key.removesuffix(BLOCKS_SUFFIX)
        if key.endswith(BLOCKS_SUFFIX) and name in sources:
            shape = layout[name]
            if sources[name]:
                if len(shape) < 2:
                    raise Mxfp4CheckpointError(f"{key}: a 1-D tensor cannot be transposed")
                shape = (*shape[:-2], shape[-1], shape[-2])
            seen[name] = torch.empty(shape, dtype=torch.float32, device="meta")
        elif not (key.endswith(SCALES_SUFFIX) and key.removesuffix(SCALES_SUFFIX) in sources):
            seen[key] = meta
    return seen, dict(sources)


def _strided_box(
    base: tuple[int, ...], start: int, shape: tuple[int, ...], stride: tuple[int, ...]
) -> tuple[tuple[slice, ...], list[int]] | None:
    """The box of a contiguous ``base``-shaped tensor that a strided block (``shape``,
    ``stride``, first element at flat index ``start``) touches, when each of the block's
    dimensions steps along a dimension of its own in ``base`` (a transpose, an even/odd split, a
    slice): (that box, its slices stepping as the block does, and the base dimension each block
    dimension runs along, -1 for those of size 1); None otherwise."""
    base_strides = [math.prod(base[d + 1 :]) for d in range(len(base))]
    first = [start // step % size for step, size in zip(base_strides, base, strict=True)]
    box = [slice(index, index + 1) for index in first]
    along: list[int] = []
    for size, step in zip(shape, stride, strict=True):
        if size == 1:
            along.append(-1)
            continue
        # The base dimension this one steps along: ``hop`` of its indices a step, staying
        # inside it (so no step carries into the next dimension), and used by no other.
        dims = [
            d
            for d, base_step in enumerate(base_strides)
            if step > 0
            and step % base_step == 0
            and box[d].stop - box[d].start == 1
            and first[d] + (size - 1) * (step // base_step) < base[d]
        ]
        if not dims:
            return None
        d, hop = dims[0], step // base_strides[dims[0]]
        box[d] = slice(first[d], first[d] + (size - 1) * hop + 1, hop)
        along.append(d)
    return tuple(box), along


class _FileProgress:
    """Calls ``report(index, count, file)`` the first time each checkpoint file is read."""

    def __init__(self, files: list[Path], report: Any):
        self.count, self.report, self.seen = len(files), report, set()

    def touch(self, file: Path) -> None:
        if file not in self.seen:
            self.seen.add(file)
            self.report(len(self.seen), self.count, file)


class SliceReader:
    """Reads slices of checkpoint tensors (one ``safe_open`` per read, so no file stays mapped
    and the pages read do not pile up in the process); FP8 weights (``fp8``: their block sizes)
    and MXFP4 pairs (``mxfp4``: :func:`mxfp4_metas`' transposes) are dequantized slice by
    slice. The last ``MXFP4_KEPT`` packed reads stay, so that gate and up, which interleave
    their rows in one pair (gpt-oss's ``gate_up_proj``), read those rows once, not once each."""

    MXFP4_KEPT = 2  # a layer's w1, w2 (another pair), w3: w3 finds w1's read

    def __init__(
        self,
        files: dict[str, Path],
        adapter: Any,
        metas: dict[str, torch.Tensor],
        fp8: dict[str, tuple[int, int]] | None = None,
        mxfp4: dict[str, bool] | None = None,
    ):
        self.files = files
        self.adapter = adapter
        self.metas = metas
        self.fp8 = fp8 or {}
        self.mxfp4 = mxfp4 or {}
        self.progress: _FileProgress | None = None
        self._converted: tuple[tuple[str, ...], dict[str, Any]] | None = None
        # (pair, its box's bounds) -> (blocks, scales), as read; the newest last.
        self._packed: dict[tuple[str, tuple[tuple[int, int], ...]], tuple[torch.Tensor, ...]] = {}

    def _read(self, key: str, box: tuple[slice, ...]) -> torch.Tensor:
        """``box`` of checkpoint tensor ``key`` as its file holds it (``()``: the whole); the
        one place that reads the files."""
        if self.progress is not None:
            self.progress.touch(self.files[key])
        with safe_open(str(self.files[key]), framework="pt") as handle:
            if not box:
                return handle.get_tensor(key)
            return handle.get_slice(key)[box]

    def _slice(self, key: str, box: tuple[slice, ...]) -> torch.Tensor:
        """``box`` of checkpoint tensor ``key`` as ``from_hf`` sees it (dequantized); a slice
        with a step (a view's even/odd split) is read whole and stepped after."""
        if key in self.mxfp4:
            return self._mxfp4_slice(key, box)
        steps = tuple(slice(None, None, b.step) for b in box)
        box = tuple(slice(b.start, b.stop) for b in box)
        if key in self.fp8:
            shape = self.metas[key].shape
            box = (*box, *(slice(0, n) for n in shape[len(box) :]))
            scale = self._read(key + SCALE_SUFFIX, ())
            block = self._read(key, box)
            offset = tuple(b.start for b in box)
            value = dequantize_block_slice(block, scale, self.fp8[key], offset)
        else:
            value = self._read(key, box)
        return value[steps] if any(b.step not in (None, 1) for b in steps) else value

    def _mxfp4_slice(self, key: str, box: tuple[slice, ...]) -> torch.Tensor:
        """``box`` of the float32 tensor an MXFP4 pair stands for: the pair's rows and the
        groups its columns lie in are read, and only the rows of the box (taking its steps)
        dequantized."""
        shape = self.metas[key].shape
        box = (*box, *(slice(0, n) for n in shape[len(box) :]))
        transposed = self.mxfp4[key]
        if transposed:  # the pair holds [..., rows, cols]; the box is of [..., cols, rows]
            box = (*box[:-2], box[-1], box[-2])
            shape = (*shape[:-2], shape[-1], shape[-2])
        *outer, columns = box
        # A stepped range (gate's or up's rows of interleaved gate_up) is read from a multiple
        # of its step to one: gate and up then read the same rows, and the second finds them.
        bounds, steps = [], []
        for b, size in zip(outer, shape, strict=False):
            step = b.step or 1
            start = b.start - b.start % step
            stop = min(size, start + step * -(-(b.stop - start) // step))
            bounds.append(slice(start, stop))
            steps.append(slice(b.start - start, b.stop - start, step))
        blocks, scales = self._packed_pair(key, (*bounds, mxfp4_groups(columns)))
        steps = tuple(steps)
        values = dequantize_mxfp4_slice(
            blocks[steps], scales[steps], slice(columns.start, columns.stop)
        )
        if columns.step not in (None, 1):
            values = values[..., :: columns.step]
        return values.transpose(-2, -1) if transposed else values

    def _packed_pair(self, key: str, box: tuple[slice, ...]) -> tuple[torch.Tensor, ...]:
        """``box`` of the blocks and scales of pair ``key``, from the files or the last reads."""
        tag = (key, tuple((b.start, b.stop) for b in box))
        if tag not in self._packed:
            pair = tuple(self._read(key + suffix, box) for suffix in (BLOCKS_SUFFIX, SCALES_SUFFIX))
            self._packed[tag] = pair
            while len(self._packed) > self.MXFP4_KEPT:
                del self._packed[next(iter(self._packed))]
        return self._packed[tag]

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
        """The block of a strided view of one checkpoint tensor: read the box of it the block
        touches (a transpose or a split steps along the tensor's own dimensions), or else the
        rows it spans."""
        _, stride, base_offset = source.view
        key = source.keys[0]
        if math.prod(shape) == 0:
            return torch.empty(shape)
        start = base_offset + sum(o * s for o, s in zip(offset, stride, strict=True))
        last = start + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
        full_shape = tuple(self.metas[key].shape)
        if not full_shape:
            scalar = self._slice(key, ())
            return scalar.as_strided(shape, stride, scalar.storage_offset() + start)
        strided = _strided_box(full_shape, start, tuple(shape), tuple(stride))
        if strided is not None:
            box, dims = strided
            part = self._slice(key, box)  # exactly the block's elements, in base order
            steps = [part.stride(d) if d >= 0 else 0 for d in dims]
            return part.as_strided(shape, steps, part.storage_offset())
        row = math.prod(full_shape[1:])
        first_row, end_row = start // row, last // row + 1
        rows = self._slice(key, (slice(first_row, end_row),)).contiguous()
        # as_strided counts from the start of the storage, which may begin before ``rows``.
        return rows.as_strided(shape, stride, rows.storage_offset() + start - first_row * row)

    def _convert(self, name: str, source: Source) -> torch.Tensor:
        if self._converted is None or self._converted[0] != source.keys:
            pieces = {key: self.metas[key] for key in source.context}
            pieces.update({key: self._slice(key, ()) for key in source.keys})
            self._converted = (source.keys, self.adapter.from_hf(pieces))
        return self._converted[1][name]


def load_local_shards(
    model_parts: list[torch.nn.Module],
    adapter: Any,
    files: dict[str, Path],
    config: dict[str, Any],
    missing_error: Any,
    progress: Any = None,
) -> None:
    """Fill every model part's (local shards of) parameters and buffers from the checkpoint.

    ``missing_error(key)`` makes the exception for a model key the checkpoint cannot make;
    ``progress(index, count, file)``, if given, is called before each file is first read.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    states = [get_model_state_dict(part) for part in model_parts]
    wanted = {key for state in states for key in state}
    metas, fp8 = dequantized_metas(checkpoint_metas(files), config)
    metas, mxfp4 = mxfp4_metas(metas, adapter)
    plan = plan_sources(adapter, metas, wanted)
    reader = SliceReader(files, adapter, metas, fp8, mxfp4)
    if progress is not None:
        reader.progress = _FileProgress(sorted(set(files.values())), progress)
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
    dict's order); keys ``to_hf`` leaves out (tied weights, buffers) are in no group.

    ``to_hf`` runs on meta tensors, one key at a time; keys it cannot convert alone (the parts of
    a per-head fused tensor) are tried together with the next ones until it can.
    """
    owner: dict[str, int] = {}  # checkpoint key -> group
    groups: list[list[str]] = []
    pending: list[str] = []
    for key in metas:
        pending.append(key)
        try:
            produced = set(adapter.to_hf({name: metas[name] for name in pending}))
        except _PROBE_ERRORS:
            continue
        keys, pending = pending, []
        if not produced:
            continue
        joined = sorted({owner[name] for name in produced if name in owner})
        index = joined[0] if joined else len(groups)
        if not joined:
            groups.append([])
        groups[index].extend(keys)
        for other in joined[1:]:  # these keys tie earlier groups together
            groups[index].extend(groups[other])
            groups[other] = []
            for name, group in owner.items():
                if group == other:
                    owner[name] = index
        owner.update(dict.fromkeys(produced, index))
    if pending:
        groups.append(pending)
    return [group for group in groups if group]


def assign_groups(groups: list[list[str]], metas: dict[str, torch.Tensor], ranks: int) -> list:
    """Each group's writer among ``ranks``: largest groups first, each to the rank with the
    fewest bytes so far (every rank computes the same answer)."""
    sizes = [sum(metas[key].numel() * metas[key].element_size() for key in g) for g in groups]
    loads = [0] * ranks
    owners = [0] * len(groups)
    for index in sorted(range(len(groups)), key=lambda i: (-sizes[i], i)):
        rank = loads.index(min(loads))
        owners[index] = rank
        loads[rank] += sizes[index]
    return owners


Box = tuple[tuple[int, ...], tuple[int, ...]]  # (local shape, global offset)


def gather_to(value: torch.Tensor, owner: int, holders: dict[Box, int]) -> torch.Tensor | None:
    """The full tensor of ``value`` on global rank ``owner`` (None elsewhere), sent block by block
    point to point: ``holders`` maps each distinct block to the rank that sends it. No other
    rank holds more than its own block (unlike ``full_tensor``, an all-gather)."""
    local = value.to_local() if isinstance(value, DTensor) else value
    me = torch.distributed.get_rank()
    if me != owner:
        if any(rank == me for rank in holders.values()):
            torch.distributed.send(local.detach().contiguous(), owner)
        return None
    full = torch.empty(value.shape, dtype=local.dtype)
    for (shape, offset), rank in holders.items():
        region = full[tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))]
        if rank == me:
            region.copy_(local)
        else:
            block = torch.empty(shape, dtype=local.dtype)
            torch.distributed.recv(block, rank)
            region.copy_(block)
    return full


def block_holders(key: str, peers: list[tuple[int, dict[str, Box]]]) -> dict[Box, int]:
    """Each distinct non-empty block of ``key`` among ``peers`` ((global rank, its blocks)) ->
    the lowest rank holding it."""
    holders: dict[Box, int] = {}
    for rank, boxes in sorted(peers, key=lambda peer: peer[0]):
        box = boxes[key]
        if math.prod(box[0]) > 0 or not box[0]:
            holders.setdefault(box, rank)
    return holders
