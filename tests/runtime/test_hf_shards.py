"""Sharded HF I/O's reading plan, family by family: every block of every model tensor that a rank
could hold, read from ``save_pretrained`` files slice by slice, equals the adapter's ``from_hf``
of the whole checkpoint; the export groups convert to exactly ``to_hf``'s tensors.

The layouts: renames (Qwen2-MoE's dense tensors), stacked fused q/k/v and gate/up (Phi-3: views),
per-head fused q/k/v (GPT-NeoX: a copy, converted whole), Conv1D transposes and a missing hub
prefix (GPT-2: views), per-expert tensors (Qwen2-MoE: stacked, read expert by expert) and tied
embeddings (Gemma), DeepSeek-V3's attention and experts, gpt-oss's fused experts.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from runtime.hf_io import checkpoint_files, load_hf_state_dict
from runtime.hf_shards import SliceReader, checkpoint_metas, export_groups, plan_sources
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


def _package(root: Path, family: str):
    name = f"{family}_pkg"
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
