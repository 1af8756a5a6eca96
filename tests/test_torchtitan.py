"""torchtitan 0.3.0's own trainer runs generated packages with the same losses as our runtime.

From the same Hugging Face initial weights and the same mock token batches, both engines train
the debug flavor of TinyLlama (llama) and Qwen3 (q/k norms, tied embeddings) for 4 steps on
1 rank, FSDP 2 and TP 2, and Mixtral (experts, load-balancing loss) on 1 rank: every step's
loss and gradient norm agree within 1e-4 relative. One launch per engine and world size trains
the packages under each of its parallelisms in turn (4 launches, each a few seconds of training
after seconds of imports), which costs less than a launch per package or parallelism. The 1-rank
torchtitan jobs also save a Hugging Face checkpoint through the package's adapter; it loads with
``from_pretrained`` and gives the logits of the runtime's export.

torchtitan runs on CPU through ``tests/torchtitan_cpu.py`` (device and gloo patches); the
packages themselves patch nothing. Skipped only where torchtitan is not installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from tests.helpers import FAMILY_CONFIGS, TINYLLAMA_CONFIG
from tests.runtime.runtime_helpers import read_metrics, run_driver, torchrun_args


def _torchtitan_missing() -> str | None:
    for module in ("torchtitan", "triton", "tyro", "torchdata", "spmd_types"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[torchtitan]')"
    version = importlib.metadata.version("torchtitan")
    if version != "0.3.0":
        return f"torchtitan {version} is installed; the bridge targets 0.3.0"
    return None


needs_torchtitan = pytest.mark.skipif(
    _torchtitan_missing() is not None, reason=str(_torchtitan_missing())
)

REPO_ROOT = Path(__file__).resolve().parent.parent
TITAN_DRIVER = Path(__file__).with_name("torchtitan_cpu.py")
PACKAGES = {
    "tinyllama": TINYLLAMA_CONFIG,
    "qwen3": FAMILY_CONFIGS / "qwen3.json",
    "mixtral": FAMILY_CONFIGS / "mixtral.json",
}
# Mixtral (experts, load-balancing loss through the bridge) on 1 rank only: its adapter splits
# the stacked expert weights per expert, which torchtitan's HF load cannot do on FSDP shards.
DENSE = ("tinyllama", "qwen3")
STEPS = 4
# Shared by both engines: 4 steps of global batch 4 (2 samples a rank and micro-batch), 64 tokens.
SHAPE = [
    "--training.steps",
    str(STEPS),
    "--training.local_batch_size",
    "2",
    "--training.global_batch_size",
    "4",
    "--training.seq_len",
    "64",
]
# World size -> (ranks, {parallelism: its arguments}): one launch per engine and world size.
LAUNCHES = {
    "1rank": (1, {"1rank": []}),
    "2ranks": (
        2,
        {
            "fsdp2": ["--parallelism.data_parallel_shard_degree", "2"],
            "tp2": [
                "--parallelism.data_parallel_shard_degree",
                "1",
                "--parallelism.tensor_parallel_degree",
                "2",
            ],
        },
    ),
}


def _env(package_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(package_root), str(REPO_ROOT), env.get("PYTHONPATH")])
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _hf_initial_weights(package_dir: Path, folder: Path) -> None:
    """transformers' own initialization of the debug flavor, saved with ``save_pretrained``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from runtime.config import JobConfig
    from runtime.hf import hf_config
    from runtime.package import resolve_train_spec

    spec, _ = resolve_train_spec(JobConfig.from_dict({"model": {"package_dir": str(package_dir)}}))
    config = hf_config(spec.model_args["debugmodel"], None, "float32")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
    model.save_pretrained(folder)


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """``{name: (package folder, HF initial weights)}``, rendered into one importable root."""
    from scaffolder.generate import generate
    from scaffolder.render import write_package

    root = tmp_path_factory.mktemp("torchtitan_packages")
    found = {}
    for name, config in PACKAGES.items():
        package_name = f"{name}_tt"
        write_package(generate(str(config), name=package_name).files, root / package_name)
        weights = root / f"{name}_hf_init"
        _hf_initial_weights(root / package_name, weights)
        found[name] = (root / package_name, weights)
    return found


def _runtime_argv(package_dir: Path, weights: Path, dump: Path, extra: list[str]) -> list[str]:
    return [
        "--job.config_file",
        str(package_dir / "train_configs" / "debug_model.toml"),
        "--model.package_dir",
        str(package_dir),
        "--job.dump_folder",
        str(dump),
        *SHAPE,
        "--checkpoint.initial_load_path",
        str(weights),
        "--checkpoint.initial_load_in_hf",
        "true",
        *extra,
    ]


def _titan_argv(package_dir: Path, weights: Path, dump: Path, extra: list[str]) -> list[str]:
    return [
        "--module",
        package_dir.name,
        "--config",
        "debug_model",
        "--dump_folder",
        str(dump),
        *SHAPE,
        "--checkpoint.enable",
        "--checkpoint.interval",
        "1000",
        "--checkpoint.initial_load_path",
        str(weights),
        "--checkpoint.initial_load_in_hf",
        *extra,
    ]


def _run_titan(tmp_path: Path, nproc: int, runs: dict[str, list[str]], root: Path) -> dict:
    plan = tmp_path / "titan_plan.json"
    result = tmp_path / "titan_result.json"
    plan.write_text(json.dumps({"runs": [{"name": n, "argv": a} for n, a in runs.items()]}))
    completed = subprocess.run(
        [*torchrun_args(nproc), str(TITAN_DRIVER), str(plan), str(result)],
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-6000:]
    results = json.loads(result.read_text())
    for entry in results.values():
        for key in ("losses", "grad_norms"):
            entry[key] = {int(step): value for step, value in entry[key].items()}
    return results


def _record(parallelism: str, name: str, ours: dict[int, float], theirs: dict[int, float]):
    """Print both engines' losses side by side (shown with ``pytest -s``; kept for the notes)."""
    for step in sorted(ours):
        losses = f"runtime {ours[step]:.6f} torchtitan {theirs[step]:.6f}"
        print(f"{parallelism} {name} step {step}: {losses}")


@needs_torchtitan
@pytest.mark.parametrize("launch", sorted(LAUNCHES))
def test_torchtitan_trains_with_the_runtime_losses(launch, packages, tmp_path):
    nproc, parallelisms = LAUNCHES[launch]
    root = next(iter(packages.values()))[0].parent
    if nproc > 1:
        packages = {name: packages[name] for name in DENSE}
    hf_save = ["--checkpoint.last_save_in_hf"] if nproc == 1 else []
    # Run names: "<parallelism>_<package>", trained in turn in one launch per engine.
    runs = {
        f"{parallelism}_{name}": (package, weights, extra)
        for parallelism, extra in parallelisms.items()
        for name, (package, weights) in packages.items()
    }
    ours = run_driver(
        tmp_path,
        nproc,
        {
            run: _runtime_argv(
                package,
                weights,
                tmp_path / f"runtime_{run}",
                [*extra, *(["--checkpoint.last_save_in_hf", "true"] if hf_save else [])],
            )
            for run, (package, weights, extra) in runs.items()
        },
    )
    theirs = _run_titan(
        tmp_path,
        nproc,
        {
            run: _titan_argv(package, weights, tmp_path / f"titan_{run}", [*extra, *hf_save])
            for run, (package, weights, extra) in runs.items()
        },
        root,
    )
    for run in runs:
        parallelism, name = run.split("_", 1)
        _record(parallelism, name, ours[run]["losses"], theirs[run]["losses"])
        assert sorted(theirs[run]["losses"]) == list(range(1, STEPS + 1)), run
        for step, loss in ours[run]["losses"].items():
            assert theirs[run]["losses"][step] == pytest.approx(loss, rel=1e-4), (run, step)
        # Gradient norms too: clipping and AdamW hide a gradient scaled by 1/dp from the losses
        # (averaging FSDP under torchtitan's summed loss; the issue measured 4.599 vs 9.199).
        norms = {
            record["step"]: record["grad_norm"]
            for record in read_metrics(tmp_path / f"runtime_{run}")
            if "grad_norm" in record
        }
        assert sorted(norms) == list(range(1, STEPS + 1)), run
        for step, norm in norms.items():
            assert theirs[run]["grad_norms"][step] == pytest.approx(norm, rel=1e-4), (run, step)
    if hf_save:
        for run in runs:
            _check_hf_checkpoint(
                tmp_path / f"titan_{run}" / "checkpoint" / f"step-{STEPS}",
                Path(ours[run]["hf_folder"]),
            )


def _check_hf_checkpoint(titan_folder: Path, runtime_folder: Path) -> None:
    """torchtitan's HF save loads with ``from_pretrained``: the runtime's exported logits."""
    from transformers import AutoModelForCausalLM

    # torchtitan writes the weights only; the model's config.json comes with the HF assets.
    (titan_folder / "config.json").write_text((runtime_folder / "config.json").read_text())
    titan = AutoModelForCausalLM.from_pretrained(titan_folder, dtype=torch.float32).eval()
    runtime = AutoModelForCausalLM.from_pretrained(runtime_folder, dtype=torch.float32).eval()
    tokens = torch.randint(0, 2048, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            titan(tokens).logits, runtime(tokens).logits, rtol=1e-4, atol=1e-4
        )


@needs_torchtitan
@pytest.mark.parametrize("name", ["tinyllama", "mixtral"])
def test_config_functions_mirror_the_toml_files(name, packages, monkeypatch):
    """Each ``train_configs/*.toml`` has a torchtitan config function with the same values."""
    import importlib

    from torchtitan.distributed.activation_checkpoint import SelectiveAC

    from runtime.config import JobConfig

    package = packages[name][0]
    monkeypatch.syspath_prepend(str(package.parent))
    registry = importlib.import_module(f"{package.name}.config_registry")
    tomls = sorted((package / "train_configs").glob("*.toml"))
    assert [path.stem for path in tomls] == sorted(["debug_model", package.name])
    for toml in tomls:
        ours = JobConfig.load(["--job.config_file", str(toml)])
        theirs = getattr(registry, toml.stem)()
        group = theirs.optimizer.param_groups[0]
        assert (group.optimizer_name, theirs.optimizer.implementation) == (
            ours.optimizer.name,
            ours.optimizer.implementation,
        )
        kwargs = group.optimizer_kwargs
        assert (kwargs["lr"], kwargs["eps"], kwargs["weight_decay"], kwargs["betas"]) == (
            ours.optimizer.lr,
            ours.optimizer.eps,
            ours.optimizer.weight_decay,
            (ours.optimizer.beta1, ours.optimizer.beta2),
        )
        pairs = {
            "flavor": (theirs.model_spec.flavor, ours.model.flavor),
            "dump_folder": (theirs.dump_folder, ours.job.dump_folder),
            "lr_scheduler": (
                [getattr(theirs.lr_scheduler, f) for f in _SCHEDULE],
                [getattr(ours.lr_scheduler, f) for f in _SCHEDULE],
            ),
            "training": (
                [getattr(theirs.training, f) for f in _TRAINING],
                [getattr(ours.training, f) for f in _TRAINING],
            ),
            "parallelism": (
                [getattr(theirs.parallelism, f) for f in _PARALLELISM],
                [getattr(ours.parallelism, f) for f in _PARALLELISM],
            ),
            "checkpoint": (
                [getattr(theirs.checkpoint, f) for f in _CHECKPOINT],
                [getattr(ours.checkpoint, f) for f in _CHECKPOINT],
            ),
            "activation_checkpoint": (
                isinstance(theirs.activation_checkpoint, SelectiveAC.Config),
                ours.activation_checkpoint.mode == "selective",
            ),
            "compile": (
                (theirs.compile.enable, theirs.compile.components),
                (ours.compile.enable, ours.compile.components),
            ),
            "metrics": (
                (theirs.metrics.log_freq, theirs.metrics.enable_tensorboard),
                (ours.metrics.log_freq, ours.metrics.enable_tensorboard),
            ),
            "seed": (theirs.dataloader.seed, ours.training.seed),
        }
        for section, (value, expected) in pairs.items():
            assert value == expected, (toml.name, section)
        assert ours.training.dataset == theirs.dataloader.dataset == "mock"
        if name == "mixtral":
            assert (registry.LOAD_BALANCING, registry.EXPERT_BIAS_UPDATE_RATE) == (
                ours.moe.load_balancing,
                ours.moe.expert_bias_update_rate,
            )


_SCHEDULE = ("warmup_steps", "decay_ratio", "decay_type", "min_lr_factor")
_TRAINING = (
    "local_batch_size",
    "global_batch_size",
    "seq_len",
    "max_norm",
    "steps",
    "mixed_precision_param",
    "mixed_precision_reduce",
)
_PARALLELISM = (
    "data_parallel_replicate_degree",
    "data_parallel_shard_degree",
    "tensor_parallel_degree",
    "pipeline_parallel_degree",
)
_CHECKPOINT = ("enable", "folder", "interval", "last_save_in_hf")


def test_scaffold_train_engine_torchtitan_builds_the_torchtitan_command(tmp_path):
    """``--engine torchtitan`` runs ``-m torchtitan.train --module PKG --config FN``; bad input
    is one line and exit 2."""
    from runtime.launch import torchtitan_argv
    from scaffolder.generate import generate
    from scaffolder.render import write_package
    from tests.helpers import run_cli

    package = tmp_path / "tiny_tt"
    write_package(generate(str(TINYLLAMA_CONFIG), name="tiny_tt").files, package)
    assert torchtitan_argv(str(package), None, ["--training.steps", "2"]) == [
        "--module",
        "tiny_tt",
        "--config",
        "debug_model",
        "--training.steps",
        "2",
    ]
    assert torchtitan_argv(str(package), "tiny_tt.toml", [])[3] == "tiny_tt"
    result = run_cli("train", str(package), "--engine", "torchtitan", "--config", "nope")
    assert result.exit_code == 2
    assert "config 'nope' not found" in result.stderr and "debug_model" in result.stderr
    (package / "config_registry.py").unlink()
    result = run_cli("train", str(package), "--engine", "torchtitan")
    assert result.exit_code == 2 and "scaffold regenerate" in result.stderr
    result = run_cli("train", str(package), "--engine", "megatron")
    assert result.exit_code == 2 and "--engine must be runtime or torchtitan" in result.stderr


@needs_torchtitan
def test_the_bridge_hf_save_keeps_float32_keys_in_float32(tmp_path, monkeypatch):
    """torchtitan casts the model to checkpoint.export_dtype before ``to_hf``; DeepSeek-V3's
    router weight and selection bias (transformers keeps them in float32) go back to float32."""
    import importlib

    from scaffolder.generate import generate
    from scaffolder.render import write_package

    write_package(
        generate(str(FAMILY_CONFIGS / "deepseek_v3.json"), name="dsv3_tt").files,
        tmp_path / "dsv3_tt",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = importlib.import_module("dsv3_tt.config_registry")
    model_spec = registry.model_registry("debugmodel")
    adapter = model_spec.state_dict_adapter(model_spec.model, None)
    assert adapter.float32_keys == ("mlp.gate.weight", "mlp.gate.e_score_correction_bias")
    model = registry.Transformer(model_spec.model.args)
    exported = {key: value.to(torch.bfloat16) for key, value in model.state_dict().items()}
    hf_state_dict = adapter.to_hf(exported)
    kept = {key for key in hf_state_dict if key.endswith(adapter.float32_keys)}
    assert kept and {hf_state_dict[key].dtype for key in kept} == {torch.float32}
    rest = {hf_state_dict[key].dtype for key in hf_state_dict.keys() - kept}
    assert rest == {torch.bfloat16}
