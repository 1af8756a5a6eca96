"""gpt-oss and DeepSeek-V3 in the runtime: attention sinks and biased, clamped experts, and
latent attention with group-limited routing, train the same on one rank and under expert, tensor
(sinks and latent heads split with the heads) and pipeline parallelism; a folder in gpt-oss's
hub MXFP4 layout imports and continues training.

The packages are gpt-oss-20b's and DeepSeek-V3's configs (tests/configs/) at their debug flavors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from runtime_helpers import (
    assert_same_hf_tensors,
    assert_same_losses,
    hf_import_argv,
    read_metrics,
    run_driver,
    run_trainer,
    transformers_first_loss,
)

from tests.helpers import family_config, render_config_package

STEPS = 6


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gpt_oss")
    render_config_package(root, "oss_pkg", family_config("gpt_oss"))
    return root / "oss_pkg"


@pytest.fixture(scope="module")
def deepseek_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deepseek_v3")
    render_config_package(root, "dsv3_pkg", family_config("deepseek_v3"))
    return root / "dsv3_pkg"


def argv(package: Path, dump: Path, *extra: str) -> list[str]:
    """6 steps of the debug flavor, global batch 4 in micro-batches of 2, 64 tokens (the sliding
    layers' window is 16)."""
    return [
        "--job.config_file",
        str(package / "train_configs" / "debug_model.toml"),
        "--job.dump_folder",
        str(dump),
        "--training.steps",
        str(STEPS),
        "--training.global_batch_size",
        "4",
        "--training.local_batch_size",
        "2",
        "--training.seq_len",
        "64",
        *extra,
    ]


def _model_args(package: Path):
    import importlib
    import sys

    sys.path.insert(0, str(package.parent))
    try:
        return importlib.import_module(package.name).get_train_spec().model_args["debugmodel"]
    finally:
        sys.path.remove(str(package.parent))


def _hub_folder(args, folder: Path) -> dict[str, torch.Tensor]:
    """Write ``folder`` as the hub serves gpt-oss (experts as MXFP4 _blocks/_scales of
    ``save_pretrained``'s tensors, quantization_config); returns the tensors transformers'
    own dequantization makes of it."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from runtime.hf_io import load_hf_state_dict
    from runtime.mxfp4 import quantize_mxfp4

    torch.manual_seed(3)
    hf_model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**args.to_hf()))
    hf_model.save_pretrained(folder.with_name(folder.name + "_saved"))
    hub, dequantized = {}, {}
    for key, value in load_hf_state_dict(folder.with_name(folder.name + "_saved")).items():
        hub[key] = dequantized[key] = value
        if key.endswith(("experts.gate_up_proj", "experts.down_proj")):
            # The hub quantizes [experts, out, in] along the input features.
            blocks, scales = quantize_mxfp4(hub.pop(key).transpose(-2, -1))
            hub[key + "_blocks"], hub[key + "_scales"] = blocks, scales
            dequantized[key] = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    folder.mkdir()
    save_file(hub, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = {**args.to_hf(), "quantization_config": {"quant_method": "mxfp4"}}
    (folder / "config.json").write_text(json.dumps(config))
    return dequantized


def test_expert_tensor_and_pipeline_parallel_match_one_rank(
    package: Path, deepseek_package: Path, tmp_path: Path
) -> None:
    """One rank against EP 2 (experts split, tokens by all-to-all), TP 2 (sinks, latent and
    attention heads split) and PP 2 on 2 ranks: the same micro-batches and curve, one job per
    world size for both packages. gpt-oss's EP and TP runs keep its load-balancing loss; PP and
    every DeepSeek-V3 run train without balancing: the pooled loss is refused across pipeline
    stages, and expert-bias updates (DeepSeek-V3's default) move by sign(mean - count), so a
    token whose top-k flips on a last-bit difference between two runs' sums moves a bias by a
    whole step.

    The EP 2 job also imports a folder in gpt-oss's hub layout (each rank reads and dequantizes
    only its experts' MXFP4 bytes), takes a step at learning rate 0 and exports it: the export
    is transformers' dequantization of the folder, bit for bit."""
    from runtime.hf_io import save_hf_checkpoint

    dequantized = _hub_folder(_model_args(package), tmp_path / "hub")
    save_hf_checkpoint(dequantized, {}, tmp_path / "dequantized")
    none = ("--moe.load_balancing", "none")
    no_fsdp = ("--parallelism.data_parallel_shard_degree", "1")
    tp2 = ("--parallelism.tensor_parallel_degree", "2", *no_fsdp)
    pp2 = ("--parallelism.pipeline_parallel_degree", "2", *no_fsdp)
    ep2 = ("--parallelism.expert_parallel_degree", "2")
    bf16_export = ("--checkpoint.last_save_in_hf", "--checkpoint.export_dtype", "bfloat16")
    one = run_driver(
        tmp_path,
        1,
        {
            "one": argv(package, tmp_path / "one"),
            "one_none": argv(package, tmp_path / "one_none", *none),
            "ds_one": argv(deepseek_package, tmp_path / "ds_one", *none),
        },
    )
    runs = {
        "ep2": argv(package, tmp_path / "ep2", *ep2),
        "tp2": argv(package, tmp_path / "tp2", *tp2),
        "pp2": argv(package, tmp_path / "pp2", *none, *pp2),
        "ds_ep2": argv(deepseek_package, tmp_path / "ds_ep2", *none, *ep2, *bf16_export),
        "ds_tp2": argv(deepseek_package, tmp_path / "ds_tp2", *none, *tp2),
        "ds_pp2": argv(deepseek_package, tmp_path / "ds_pp2", *none, *pp2),
        "ep2_mxfp4": argv(package, tmp_path / "ep2_mxfp4", *ep2, *hf_import_argv(tmp_path / "hub")),
    }
    results = run_driver(tmp_path, 2, runs)
    assert_same_hf_tensors(tmp_path / "ep2_mxfp4" / "hf", tmp_path / "dequantized")
    assert sorted(one["one"]["losses"]) == list(range(1, STEPS + 1))
    for name in ("ep2", "tp2"):
        assert_same_losses(results[name]["losses"], one["one"]["losses"])
    assert_same_losses(results["pp2"]["losses"], one["one_none"]["losses"])
    for name in ("ds_ep2", "ds_tp2", "ds_pp2"):
        assert_same_losses(results[name]["losses"], one["ds_one"]["losses"])
    # The bf16 export keeps the router's weight and selection bias in float32, as transformers
    # does (DeepseekV3's _keep_in_fp32_modules_strict).
    dtypes = _safetensors_dtypes(tmp_path / "ds_ep2" / "hf")
    float32 = sorted(k for k, dtype in dtypes.items() if dtype == "F32")
    assert float32 and all(
        k.endswith((".gate.weight", ".gate.e_score_correction_bias")) for k in float32
    )
    assert len(float32) == 2 * sum(k.endswith(".gate.e_score_correction_bias") for k in dtypes)
    assert {dtype for k, dtype in dtypes.items() if k not in float32} == {"BF16"}


def _safetensors_dtypes(folder: Path) -> dict[str, str]:
    """Checkpoint key -> safetensors dtype name, from the files' headers."""
    dtypes = {}
    for file in folder.glob("*.safetensors"):
        with open(file, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        dtypes.update({k: v["dtype"] for k, v in header.items() if k != "__metadata__"})
    return dtypes


def test_mxfp4_hub_folder_imports_and_continues_training(package: Path, tmp_path: Path) -> None:
    """A folder as the hub serves gpt-oss (experts as MXFP4 _blocks/_scales, quantization_config)
    loads through the adapter; the first step's loss is transformers' on the weights its own
    dequantization gives."""
    from transformers import AutoModelForCausalLM

    from runtime.hf_io import save_hf_checkpoint

    args = _model_args(package)
    dequantized = _hub_folder(args, tmp_path / "hub")
    run = argv(
        package,
        tmp_path / "continued",
        "--training.steps",
        "2",
        "--training.local_batch_size",
        "4",
        "--checkpoint.initial_load_path",
        str(tmp_path / "hub"),
        "--checkpoint.initial_load_in_hf",
    )
    result = run_trainer(*run)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "loaded HF weights" in result.stdout

    save_hf_checkpoint(dequantized, args.to_hf(), tmp_path / "dequantized")
    reference = AutoModelForCausalLM.from_pretrained(
        tmp_path / "dequantized", attn_implementation="eager", dtype=torch.float32
    )
    expected = transformers_first_loss(reference, run, args.vocab_size)
    losses = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "continued")}
    assert losses[1] == pytest.approx(expected, rel=1e-5)
    assert sorted(losses) == [1, 2]
