"""The command line: bad input is one line on stderr and exit 2; the launcher trains."""

from __future__ import annotations

import pytest
from runtime_helpers import DEBUG_TOML, PACKAGE_DIR, child_env, read_metrics, run_trainer

from runtime.config import JobConfig
from runtime.launch import run_train
from runtime.train import main
from runtime.trainer import Trainer


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--training.bogus", "1"], "unknown config key 'training.bogus'"),
        (["--parallelism.tensor_parallel_degree", "3"], "world size 1 is not divisible"),
        (["--parallelism.data_parallel_shard_degree", "2"], "must equal the world size 1"),
        (["--training.global_batch_size", "6"], "global_batch_size 6 must be a multiple"),
        (["--model.flavor", "huge"], "model.flavor 'huge' is not a flavor"),
        (["--model.package_dir", "/nonexistent/pkg"], "is not a Python package"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(argv, message, capsys):
    assert main(["--job.config_file", str(DEBUG_TOML), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_missing_package_from_the_command_line():
    completed = run_trainer("--model.name", "no_such_model_package", timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: model package 'no_such_model_package' not found; put its parent folder on "
        "PYTHONPATH, set model.package_dir, or use a config file inside the package"
    ]


def test_package_found_by_import_name(tmp_path, monkeypatch):
    config_file = tmp_path / "job.toml"
    config_file.write_text(
        f'[model]\nname = "{PACKAGE_DIR.name}"\n[training]\nseq_len = 64\nlocal_batch_size = 2\n'
    )
    monkeypatch.syspath_prepend(str(PACKAGE_DIR.parent))
    trainer = Trainer(JobConfig.load(["--job.config_file", str(config_file)]), world_size=2)
    assert trainer.spec.name == PACKAGE_DIR.name
    assert trainer.parallel_dims.dp_shard == 2


def test_launcher_rejects_impossible_degrees_before_starting(capsys):
    overrides = ["--parallelism.tensor_parallel_degree", "4"]
    assert run_train(str(PACKAGE_DIR), nproc=4, overrides=overrides) == 2
    err = capsys.readouterr().err
    assert "tensor_parallel_degree 4 must divide the number of kv heads 2" in err
    assert run_train(str(PACKAGE_DIR), nproc=1, config="no_such_config") == 2
    assert "config 'no_such_config' not found" in capsys.readouterr().err


def test_launcher_names_what_is_missing_before_starting(tmp_path, capsys):
    """A package folder that does not exist, an import name without a config, and several
    nodes without a rendezvous: one line each, exit 2, no torchrun started."""
    assert run_train(str(tmp_path / "nope")) == 2
    assert f"package folder not found: {tmp_path / 'nope'}" in capsys.readouterr().err
    assert run_train("no_such_package") == 2
    assert "'no_such_package' is not a folder here" in capsys.readouterr().err
    assert run_train(str(PACKAGE_DIR), nproc=1, nnodes=2) == 2
    assert "--nnodes 2 needs --rdzv-endpoint host:port" in capsys.readouterr().err


def test_launcher_trains_with_fsdp_and_writes_metrics(tmp_path, monkeypatch):
    for key, value in child_env().items():
        monkeypatch.setenv(key, value)
    dump = tmp_path / "run"
    overrides = ["--job.dump_folder", str(dump), "--training.steps", "3"]
    overrides += ["--training.seq_len", "32", "--metrics.enable_tensorboard"]
    assert run_train(str(PACKAGE_DIR), nproc=2, config="debug_model", overrides=overrides) == 0
    records = read_metrics(dump)
    assert [record["step"] for record in records] == [1, 2, 3]
    for record in records:
        assert {"loss", "tokens_per_sec", "mfu", "memory_gib"} <= set(record)
        assert record["tokens_per_sec"] > 0 and 0 < record["mfu"] and record["memory_gib"] > 0
    assert list((dump / "tb").glob("events.out.tfevents.*"))


PRIMUS_EXPERIMENT = PACKAGE_DIR / "megatron" / "exp_pretrain.yaml"


def test_primus_experiment_maps_onto_the_runtime_config():
    config = JobConfig.load(["--job.config_file", str(PRIMUS_EXPERIMENT)])
    trainer = Trainer(config, world_size=8)
    assert (trainer.model_args.n_layers, trainer.model_args.dim) == (22, 2048)
    assert config.training.dataset == "mock" and config.training.global_batch_size == 16
    assert trainer.accum_steps == 1
    assert config.job.dump_folder.endswith("-pretrain")


def test_primus_experiment_trains_with_shrunk_dimensions(tmp_path):
    tiny = "vocab_size=256,dim=64,n_layers=2,n_heads=4,n_kv_heads=2,head_dim=16,ffn_dim=128"
    argv = ["--job.config_file", str(PRIMUS_EXPERIMENT), "--model.args_overrides", tiny]
    argv += ["--job.dump_folder", str(tmp_path), "--training.seq_len", "32"]
    argv += ["--training.steps", "2"]
    completed = run_trainer(*argv)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "global batch 16 = local 2 x dp 1 x accumulation 8" in completed.stdout
    assert [record["step"] for record in read_metrics(tmp_path)] == [1, 2]


def test_a_model_without_pipeline_stages_refuses_pipeline_parallelism(tmp_path):
    """Tied embeddings: the package has no infra/pipeline.py and says so in one line."""
    from runtime.config import ConfigError
    from tests.helpers import render_config_package, tinyllama_config

    render_config_package(tmp_path, "tied", tinyllama_config(tie_word_embeddings=True))
    package = tmp_path / "tied"
    assert not (package / "infra" / "pipeline.py").exists()
    config = JobConfig.load(
        [
            "--job.config_file",
            str(package / "train_configs" / "debug_model.toml"),
            "--parallelism.pipeline_parallel_degree",
            "2",
            "--parallelism.data_parallel_shard_degree",
            "1",
        ]
    )
    with pytest.raises(ConfigError, match="pipeline_parallel_degree must be 1: model tied has no"):
        Trainer(config, world_size=2)
