"""Sharded HF I/O's reading plan, family by family: every block of every model tensor that a rank
could hold, read from ``save_pretrained`` files slice by slice, equals the adapter's ``from_hf``
of the whole checkpoint; the export groups convert to exactly ``to_hf``'s tensors.

The layouts: renames (Qwen2-MoE's dense tensors), stacked fused q/k/v and gate/up (Phi-3: views),
per-head fused q/k/v (GPT-NeoX: a copy, converted whole), Conv1D transposes and a missing hub
prefix (GPT-2: views), per-expert tensors (Qwen2-MoE: stacked, read expert by expert) and tied
embeddings (Gemma), DeepSeek-V3's attention and experts, gpt-oss's fused experts, and gpt-oss's
experts as the hub stores them (MXFP4 pairs, dequantized slice by slice).
"""

from __future__ import annotations

import importlib
import math
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from runtime.hf_io import checkpoint_files, load_hf_state_dict, save_hf_checkpoint
from runtime.hf_shards import (
    SliceReader,
    Source,
    checkpoint_metas,
    export_groups,
    mxfp4_metas,
    plan_sources,
)
from runtime.mxfp4 import (
    BLOCKS_SUFFIX,
    SCALES_SUFFIX,
    Mxfp4CheckpointError,
    dequantize_mxfp4_slice,
    mxfp4_groups,
    quantize_mxfp4,
)
from tests.helpers import family_config, render_config_package

FAMILIES = {
    "phi3": ({}, "view"),
    "gpt_neox": ({}, "convert"),
    "gpt2": ({}, "view"),
    "qwen2_moe": ({"decoder_sparse_step": 2, "mlp_only_layers": [0]}, "stack"),
    "gemma": ({}, "direct"),
    "deepseek_v3": ({}, "stack"),
    "gpt_oss": ({}, "direct"),
}


def _package(root: Path, family: str, name: str = ""):
    name = name or f"{family}_pkg"
    render_config_package(root, name, family_config(family, **FAMILIES[family][0]))
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(root))


def _blocks(shape: tuple[int, ...]):
    """(local shape, offset) of whole tensors, row halves, the last third of the columns and
    one row-and-column quarter: what FSDP, TP and their mix give a rank."""
    if not shape:
        yield (), ()
        return
    yield shape, (0,) * len(shape)
    rows = shape[0]
    yield (rows // 2, *shape[1:]), (0,) * len(shape)
    yield (rows - rows // 2, *shape[1:]), (rows // 2, *(0,) * (len(shape) - 1))
    if len(shape) >= 2:
        cols = shape[1]
        yield (
            (rows, cols - 2 * (cols // 3), *shape[2:]),
            (0, 2 * (cols // 3), *(0,) * (len(shape) - 2)),
        )
        yield (rows // 4, cols // 2, *shape[2:]), (rows // 4, cols // 2, *(0,) * (len(shape) - 2))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_block_reads_as_from_hf_makes_it(family: str, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    package = _package(tmp_path, family)
    spec = package.get_train_spec()
    args = spec.model_args["debugmodel"]
    torch.manual_seed(0)
    hf_model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**args.to_hf()))
    hf_model.save_pretrained(tmp_path / "hf", max_shard_size="1MB")
    adapter = spec.state_dict_adapter(args, None)
    with torch.device("meta"):
        model = spec.model_cls(args)
    wanted = set(model.state_dict())

    files = checkpoint_files(tmp_path / "hf")
    plan = plan_sources(adapter, checkpoint_metas(files), wanted)
    full = adapter.from_hf(load_hf_state_dict(tmp_path / "hf"))
    assert set(plan) == wanted
    assert FAMILIES[family][1] in {source.kind for source in plan.values()}
    reader = SliceReader(files, adapter, checkpoint_metas(files))
    for key, source in plan.items():
        assert source.shape == tuple(full[key].shape), key
        for shape, offset in _blocks(source.shape):
            box = tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))
            block = reader.read(key, source, shape, offset)
            assert torch.equal(block, full[key][box]), (key, shape, offset)

    metas = {key: value.to("meta") for key, value in full.items() if key in wanted}
    expected = adapter.to_hf({key: full[key] for key in metas})
    converted = {}
    for group in export_groups(adapter, metas):
        part = adapter.to_hf({key: full[key] for key in group})
        assert not set(part) & set(converted)
        converted.update(part)
    assert sorted(converted) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(converted[key], value), key


def _mxfp4_folder(root: Path, args) -> Path:
    """gpt-oss's debug flavor as the hub serves it: ``save_pretrained``'s expert weights as
    MXFP4 pairs of their transposes (``quantize_mxfp4``), in shards so small that gate_up's
    blocks and scales lie in different files."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    hf_model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**args.to_hf()))
    hf_model.save_pretrained(root / "saved")
    hub = {}
    for key, value in load_hf_state_dict(root / "saved").items():
        if key.endswith(("experts.gate_up_proj", "experts.down_proj")):
            # The hub quantizes [experts, out, in] along the input features.
            blocks, scales = quantize_mxfp4(value.transpose(-2, -1))
            hub[key + BLOCKS_SUFFIX], hub[key + SCALES_SUFFIX] = blocks, scales
        else:
            hub[key] = value
    config = {**args.to_hf(), "quantization_config": {"quant_method": "mxfp4"}}
    return save_hf_checkpoint(hub, config, root / "hub", max_shard_bytes=300_000)


def _expert_blocks(shape: tuple[int, ...]):
    """What expert parallelism gives a rank of a stacked ``[experts, ...]`` tensor on 2 and 4
    ranks, with FSDP splitting its experts' rows, and the slices of the last dimension that
    tensor parallelism's row-wise split gives (offsets not aligned to the 32-value groups)."""
    experts = shape[0]
    for ranks in (2, 4):
        for rank in range(ranks):
            yield (experts // ranks, *shape[1:]), (rank * experts // ranks, *(0,) * len(shape[1:]))
    if len(shape) == 3:
        rows, cols = shape[1], shape[2]
        yield (experts // 2, rows // 2, cols), (experts // 2, rows // 2, 0)
        yield (experts, rows, cols - cols // 3), (0, 0, cols // 3)
        yield (experts // 4, rows // 3, cols // 3 + 7), (experts // 4, rows // 3 + 1, cols // 3)


@pytest.fixture(scope="module")
def gpt_oss(tmp_path_factory: pytest.TempPathFactory):
    """gpt-oss's package (debug flavor): its train spec, args, adapter, model keys and a folder
    in the hub's layout."""
    root = tmp_path_factory.mktemp("gpt_oss_mxfp4")
    spec = _package(root, "gpt_oss", "oss_mxfp4_pkg").get_train_spec()
    args = spec.model_args["debugmodel"]
    with torch.device("meta"):
        model = spec.model_cls(args)
    adapter = spec.state_dict_adapter(args, None)
    return SimpleNamespace(
        spec=spec,
        args=args,
        adapter=adapter,
        wanted=set(model.state_dict()),
        folder=_mxfp4_folder(root, args),
    )


class _RecordingReader(SliceReader):
    """A SliceReader that notes every read of the files: (key, box, bytes)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads: list[tuple[str, tuple[slice, ...], int]] = []

    def _read(self, key: str, box: tuple[slice, ...]) -> torch.Tensor:
        value = super()._read(key, box)
        self.reads.append((key, box, value.numel() * value.element_size()))
        return value


def test_mxfp4_blocks_read_as_from_hf_makes_them(gpt_oss) -> None:
    """gpt-oss's hub layout: every block a rank could hold of the expert weights (whole, FSDP
    and TP slices, expert-parallel shares) dequantized from just the bytes it needs equals the
    adapter's ``from_hf`` of the whole folder (which dequantizes whole tensors), bit for bit."""
    adapter, args, wanted, folder = gpt_oss.adapter, gpt_oss.args, gpt_oss.wanted, gpt_oss.folder
    files = checkpoint_files(folder)
    assert len(set(files.values())) > 2
    metas, mxfp4 = mxfp4_metas(checkpoint_metas(files), adapter)
    assert len(mxfp4) == 2 * args.n_layers and all(mxfp4.values())
    assert not any(key.endswith((BLOCKS_SUFFIX, SCALES_SUFFIX)) for key in metas)
    assert any(files[key + BLOCKS_SUFFIX] != files[key + SCALES_SUFFIX] for key in mxfp4)
    plan = plan_sources(adapter, metas, wanted)
    full = adapter.from_hf(load_hf_state_dict(folder))
    assert set(plan) == wanted
    quantized = [key for key, source in plan.items() if source.keys[0] in mxfp4]
    assert len(quantized) == 3 * args.n_layers  # w1 and w3 from gate_up_proj, w2 from down_proj
    assert {plan[key].kind for key in quantized} == {"view"}
    # An adapter that does not name its pairs gets them converted whole (every rank reads and
    # dequantizes every pair), but only them: not the tensors that make other model tensors.
    bare = SimpleNamespace(from_hf=adapter.from_hf)
    fallback = plan_sources(bare, checkpoint_metas(files), wanted)
    assert {fallback[key].kind for key in quantized} == {"convert"}
    assert {key for name in quantized for key in fallback[name].keys} == {
        pair + suffix for pair in mxfp4 for suffix in (BLOCKS_SUFFIX, SCALES_SUFFIX)
    }
    reader = SliceReader(files, adapter, metas, None, mxfp4)
    for key, source in plan.items():
        assert source.shape == tuple(full[key].shape), key
        blocks = list(_blocks(source.shape))
        if key.startswith("layers.") and ".moe.experts." in key:
            blocks += list(_expert_blocks(source.shape))
        for shape, offset in blocks:
            box = tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))
            block = reader.read(key, source, shape, offset)
            assert block.dtype == full[key].dtype == torch.float32, key
            assert torch.equal(block, full[key][box]), (key, shape, offset)


def test_a_rank_reads_only_the_mxfp4_bytes_of_its_slice(gpt_oss, monkeypatch) -> None:
    """Under expert parallelism on 4 ranks a rank reads its experts' rows of each pair and no
    other, never more than a quarter of the pair; a row-wise TP slice of ``w2`` (input features)
    reads only the 32-value groups its columns lie in, a column-wise one of ``w1`` only the
    gate_up rows its output features interleave with, and dequantizes only its own rows."""
    import runtime.hf_shards

    dequantized: list[int] = []  # values dequantized, call by call

    def counting(*args, **kwargs):
        values = dequantize_mxfp4_slice(*args, **kwargs)
        dequantized.append(values.numel())
        return values

    monkeypatch.setattr(runtime.hf_shards, "dequantize_mxfp4_slice", counting)
    adapter, args, wanted, folder = gpt_oss.adapter, gpt_oss.args, gpt_oss.wanted, gpt_oss.folder
    files = checkpoint_files(folder)
    metas, mxfp4 = mxfp4_metas(checkpoint_metas(files), adapter)
    plan = plan_sources(adapter, metas, wanted)
    stored = checkpoint_metas(files)
    quantized = {key: source for key, source in plan.items() if source.keys[0] in mxfp4}
    experts = args.num_experts
    for rank in range(4):
        share = slice(rank * experts // 4, (rank + 1) * experts // 4)
        for key, source in quantized.items():
            reader = _RecordingReader(files, adapter, metas, None, mxfp4)
            shape = (share.stop - share.start, *source.shape[1:])
            dequantized.clear()
            reader.read(key, source, shape, (share.start, 0, 0))
            assert dequantized == [math.prod(shape)], key
            pair = source.keys[0]
            assert sorted({read[0] for read in reader.reads}) == [
                pair + BLOCKS_SUFFIX,
                pair + SCALES_SUFFIX,
            ]
            assert all(box[0] == share for _, box, _ in reader.reads), (key, reader.reads)
            for suffix in (BLOCKS_SUFFIX, SCALES_SUFFIX):
                whole = stored[pair + suffix]
                read = sum(size for name, _, size in reader.reads if name == pair + suffix)
                assert 0 < read <= whole.numel() * whole.element_size() // 4, (key, suffix)

    rows, cols = args.dim, args.ffn_dim
    down = _RecordingReader(files, adapter, metas, None, mxfp4)
    w2 = "layers.1.moe.experts.w2"  # [experts, dim, ffn]: the pair's rows are dim, columns ffn
    start, width = cols // 3, cols // 3 + 7
    down.read(w2, plan[w2], (experts, rows, width), (0, 0, start))
    groups = mxfp4_groups(slice(start, start + width))
    assert groups.start * 32 < start and groups.stop - groups.start < cols // 32
    assert [box[1:] for _, box, _ in down.reads] == [(slice(0, rows), groups)] * 2
    gate = _RecordingReader(files, adapter, metas, None, mxfp4)
    w1 = "layers.1.moe.experts.w1"  # [experts, ffn, dim]: gate_up's even rows
    dequantized.clear()
    gate.read(w1, plan[w1], (experts, cols // 4, rows), (0, cols // 4, 0))
    # From gate's first row to up's last: the rows w3 of the same slice reads.
    assert [box[1] for _, box, _ in gate.reads] == [slice(cols // 2, cols)] * 2
    assert dequantized == [experts * cols // 4 * rows]  # not up's rows between
    # As an import reads a layer, w1, w2 (down_proj), w3 through one reader: gate_up's blocks
    # and scales are read once for w1 and w3.
    layer = _RecordingReader(files, adapter, metas, None, mxfp4)
    for name in ("w1", "w2", "w3"):
        key = f"layers.1.moe.experts.{name}"
        layer.read(key, plan[key], (experts // 2, *plan[key].shape[1:]), (experts // 2, 0, 0))
    assert sorted(name for name, _, _ in layer.reads) == sorted(
        f"model.layers.1.mlp.experts.{pair}{suffix}"
        for pair in ("gate_up_proj", "down_proj")
        for suffix in (BLOCKS_SUFFIX, SCALES_SUFFIX)
    )


def test_a_pair_that_does_not_fit_is_refused_in_one_line(gpt_oss, tmp_path: Path) -> None:
    """Scales cut short in the files: the import stops before reading a tensor, naming the
    pair (a ConfigError, which the trainer prints as one line and exits 2 on)."""
    from safetensors.torch import load_file, save_file

    from runtime.config import ConfigError
    from runtime.hf import import_hf

    adapter, args, folder = gpt_oss.adapter, gpt_oss.args, gpt_oss.folder
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    key = "model.layers.1.mlp.experts.down_proj" + SCALES_SUFFIX
    path = checkpoint_files(broken)[key]
    tensors = load_file(str(path))
    tensors[key] = tensors[key][..., :-1].contiguous()
    save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises(Mxfp4CheckpointError, match="down_proj_blocks .* does not match"):
        mxfp4_metas(checkpoint_metas(checkpoint_files(broken)), adapter)
    with torch.device("meta"):
        model = gpt_oss.spec.model_cls(args)
    with pytest.raises(ConfigError, match=f"HF checkpoint {broken}: .*{key}") as error:
        import_hf([model], adapter, broken, args, "debugmodel")
    assert "\n" not in str(error.value)


def test_views_read_the_box_they_touch_or_else_their_rows(tmp_path: Path) -> None:
    """A view whose dimensions each step along one of the tensor's (a transpose, an even/odd
    split) is read as the box of the tensor it touches; one that folds dimensions together (a
    reshape) as the rows it spans. Either way the block equals the view's."""
    from safetensors.torch import save_file

    tensor = torch.arange(6 * 8 * 10, dtype=torch.float32).reshape(6, 8, 10)
    save_file({"w": tensor}, str(tmp_path / "model.safetensors"))
    files = checkpoint_files(tmp_path)
    views = {
        "odd_columns_transposed": tensor[..., 1::2].transpose(1, 2),
        "folded": tensor.view(6 * 8, 10).t(),
        "one_row": tensor[2],
    }
    for name, view in views.items():
        source = Source("view", ("w",), tuple(view.shape), _view_of(view))
        for shape, offset in _blocks(tuple(view.shape)):
            reader = _RecordingReader(files, None, checkpoint_metas(files))
            box = tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))
            assert torch.equal(reader.read(name, source, shape, offset), view[box]), name
            ((_, read, _),) = reader.reads
            touched = math.prod(view[box].shape)
            if name == "folded":
                assert len(read) == 1, read  # rows of the tensor
            else:
                assert math.prod(s.stop - s.start for s in read) < 2 * touched, (name, read)


def _view_of(view: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    return tuple(view.shape), tuple(view.stride()), view.storage_offset()
