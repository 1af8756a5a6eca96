"""Mixture-of-experts training in the runtime: the load-balancing loss and expert-bias balancing
agree across parallelisms, and the expert-bias update does what it says.

The package is Qwen2-MoE with dense layers (decoder_sparse_step 2, mlp_only_layers [0]), a
shared expert and untied embeddings: both kinds of blocks, every MoE module, and a pipeline.
"""

from __future__ import annotations

import importlib
import sys
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
    write_hf_folder,
)

from runtime.config import ConfigError, JobConfig
from runtime.moe import LoadBalancer
from tests.helpers import family_config, render_config_package

STEPS = 6
CONFIG = ("qwen2_moe", {"decoder_sparse_step": 2, "mlp_only_layers": [0]})


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("moe")
    render_config_package(root, "moe_pkg", family_config(CONFIG[0], **CONFIG[1]))
    return root / "moe_pkg"


def argv(package: Path, dump: Path, *extra: str) -> list[str]:
    """6 steps of the debug flavor, global batch 4 in micro-batches of 2, 64 tokens."""
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


def test_losses_agree_across_fsdp_tensor_and_pipeline_parallel(package: Path, tmp_path: Path):
    """FSDP 2 against TP 2 with the load-balancing loss; FSDP 2 against PP 2 with expert-bias
    balancing (the loss pools all layers, which pipeline stages split: refused there)."""
    tp = (
        "--parallelism.tensor_parallel_degree",
        "2",
        "--parallelism.data_parallel_shard_degree",
        "1",
    )
    pp = (
        "--parallelism.pipeline_parallel_degree",
        "2",
        "--parallelism.data_parallel_shard_degree",
        "1",
    )
    bias = ("--moe.load_balancing", "expert_bias", "--moe.expert_bias_update_rate", "0.01")
    runs = {
        "fsdp": argv(package, tmp_path / "fsdp"),
        "tp": argv(package, tmp_path / "tp", *tp),
        "fsdp_bias": argv(package, tmp_path / "fsdp_bias", *bias),
        "pp_bias": argv(package, tmp_path / "pp_bias", *pp, *bias),
    }
    results = run_driver(tmp_path, 2, runs)
    fsdp = results["fsdp"]["losses"]
    assert sorted(fsdp) == list(range(1, STEPS + 1))
    assert_same_losses(results["tp"]["losses"], fsdp)
    assert_same_losses(results["pp_bias"]["losses"], results["fsdp_bias"]["losses"])
    # The biases steer routing: from the second step on the curves part.
    assert results["fsdp_bias"]["losses"][1] == pytest.approx(fsdp[1], rel=1e-6)
    assert results["fsdp_bias"]["losses"][STEPS] != pytest.approx(fsdp[STEPS], rel=1e-6)
    metrics = read_metrics(tmp_path / "fsdp")
    assert all(m["aux_loss"] > 0 and m["moe_max_over_mean"] >= 1.0 for m in metrics)
    assert all("aux_loss" not in m for m in read_metrics(tmp_path / "fsdp_bias"))


def test_expert_parallel_matches_one_rank_and_fsdp(package: Path, tmp_path: Path) -> None:
    """One rank (four micro-batches of one sample a step), FSDP 4, EP 2 x FSDP 2 and EP 4 on 4
    ranks (one sample each): the same micro-batches, load-balancing losses and curve.

    Also: sharded HF import under EP 4 and EP 2 x FSDP 2 (each rank reads its experts' tensors)
    re-exports a save_pretrained folder bit for bit."""
    batch = ("--training.local_batch_size", "1")
    one = run_driver(tmp_path, 1, {"one": argv(package, tmp_path / "one", *batch)})
    ep2 = ("--parallelism.expert_parallel_degree", "2")
    ep4 = ("--parallelism.expert_parallel_degree", "4")
    runs = {
        "fsdp4": argv(package, tmp_path / "fsdp4", *batch),
        "ep2": argv(package, tmp_path / "ep2", *batch, *ep2),
        "ep4": argv(package, tmp_path / "ep4", *batch, *ep4),
    }
    hf = write_hf_folder(package, tmp_path / "hf_source")
    imports = {"import_ep4": ep4, "import_ep2": ep2}
    for name, extra in imports.items():
        runs[name] = argv(package, tmp_path / name, *batch, *extra, *hf_import_argv(hf))
    results = run_driver(tmp_path, 4, runs)
    for name in ("fsdp4", "ep2", "ep4"):
        assert_same_losses(results[name]["losses"], one["one"]["losses"])
    for name in imports:
        assert_same_hf_tensors(tmp_path / name / "hf", hf)


def _model(package: Path):
    sys.path.insert(0, str(package.parent))
    try:
        module = importlib.import_module(package.name)
    finally:
        sys.path.remove(str(package.parent))
    spec = module.get_train_spec()
    args = spec.model_args["debugmodel"]
    torch.manual_seed(0)
    model = spec.model_cls(args)
    model.init_weights()
    return model.train(), args


def test_expert_bias_update_moves_towards_underloaded_experts(package: Path) -> None:
    model, args = _model(package)
    config = JobConfig().moe
    config.load_balancing = "expert_bias"
    balancer = LoadBalancer(config, [model], args, dp_mesh=None)
    assert len(balancer.layers) == 2 and balancer.loss() is None
    tokens = torch.randint(0, args.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    model(tokens)
    counts = [layer.tokens_per_expert.clone() for layer in balancer.layers]
    stats = balancer.before_optimizer_step()
    for layer, count in zip(balancer.layers, counts, strict=True):
        assert count.sum() == 2 * 32 * args.top_k
        expected = torch.sign(count.mean() - count) * config.expert_bias_update_rate
        torch.testing.assert_close(layer.expert_bias, expected - expected.mean())
        assert not layer.tokens_per_expert.any()
    loads = torch.stack(counts)
    assert stats.max_over_mean == pytest.approx(float((loads.max(1).values / loads.mean(1)).max()))


def test_aux_loss_weighs_the_models_loss_by_router_aux_loss_coef(package: Path) -> None:
    model, args = _model(package)
    balancer = LoadBalancer(JobConfig().moe, [model], args, dp_mesh=None)
    model(torch.zeros(1, 16, dtype=torch.long))
    expected = args.router_aux_loss_coef * model.load_balancing_loss()
    torch.testing.assert_close(balancer.loss(), expected)


def test_aux_loss_with_pipeline_parallel_is_refused(package: Path) -> None:
    from runtime.trainer import Trainer

    config = JobConfig.load(
        argv(package, package / "unused", "--parallelism.pipeline_parallel_degree", "2")
    )
    with pytest.raises(ConfigError, match="moe.load_balancing aux_loss"):
        Trainer(config, world_size=2)


def test_import_of_a_transformers_folder_continues_training(package: Path, tmp_path: Path):
    """A folder transformers' save_pretrained wrote (one tensor per expert) loads through the
    adapter; the first step's loss is transformers' on the same batch."""
    from transformers import AutoConfig, AutoModelForCausalLM

    _, args = _model(package)
    torch.manual_seed(3)
    hf_model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**args.to_hf()))
    hf_model.save_pretrained(tmp_path / "hf")
    run = argv(
        package,
        tmp_path / "continued",
        "--training.steps",
        "2",
        "--training.local_batch_size",
        "4",
        "--checkpoint.initial_load_path",
        str(tmp_path / "hf"),
        "--checkpoint.initial_load_in_hf",
    )
    result = run_trainer(*run)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "loaded HF weights" in result.stdout
    expected = transformers_first_loss(hf_model, run, args.vocab_size)
    losses = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "continued")}
    assert losses[1] == pytest.approx(expected, rel=1e-5)
    assert sorted(losses) == [1, 2]
