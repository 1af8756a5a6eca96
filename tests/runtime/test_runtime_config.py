"""Unit tests of the runtime config, parallel degrees and pipeline stage splitting."""

from __future__ import annotations

import pytest
from torch import nn

from runtime.config import ConfigError, JobConfig, parse_overrides
from runtime.distributed import ParallelDims
from runtime.distributed.pipeline import generate_module_names_per_stage, split_model


def test_toml_then_overrides(tmp_path):
    toml = tmp_path / "job.toml"
    toml.write_text(
        '[model]\nname = "pkg"\n[training]\nsteps = 5\nmax_norm = 2\n'
        '[compile]\ncomponents = ["model"]\n'
    )
    config = JobConfig.load(
        ["--job.config_file", str(toml), "--training.steps=7", "--training.deterministic"]
    )
    assert config.model.name == "pkg"
    assert config.training.steps == 7
    assert config.training.max_norm == 2.0 and isinstance(config.training.max_norm, float)
    assert config.training.deterministic is True
    assert config.compile.components == ["model"]
    assert config.job.config_file == str(toml)


def test_override_parsing_of_lists_and_none():
    config = JobConfig.load(
        ["--compile.components", "model,loss", "--lr_scheduler.decay_ratio", "none"]
    )
    assert config.compile.components == ["model", "loss"]
    assert config.lr_scheduler.decay_ratio is None
    assert parse_overrides(["--a.b", "--c.d", "x"]) == {"a.b": None, "c.d": "x"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope.steps", "1"], "unknown config section 'nope'"),
        (["--training.stepz", "1"], "unknown config key 'training.stepz'"),
        (["--training.steps", "many"], "--training.steps must be int"),
        (["--training.deterministic", "maybe"], "must be true or false"),
        (["--parallelism.pipeline_parallel_schedule", "ZB"], "must be one of 1F1B"),
        (["--training.steps", "0"], "training.steps must be >= 1"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_overrides_name_the_problem(argv, message):
    with pytest.raises(ConfigError, match=message) as info:
        JobConfig.load(argv)
    assert "\n" not in str(info.value)


def test_bad_toml_values(tmp_path):
    toml = tmp_path / "job.toml"
    toml.write_text("[training]\nsteps = 'ten'\n")
    with pytest.raises(ConfigError, match="training.steps must be int"):
        JobConfig.load(["--job.config_file", str(toml)])
    toml.write_text("[training]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'training.bogus'"):
        JobConfig.load(["--job.config_file", str(toml)])
    with pytest.raises(ConfigError, match="config file not found"):
        JobConfig.load(["--job.config_file", str(tmp_path / "missing.toml")])


def test_parallel_dims_fill_in_shard_degree():
    dims = ParallelDims(dp_replicate=2, dp_shard=-1, tp=2, pp=1, world_size=8)
    assert dims.dp_shard == 2
    assert dims.dp_enabled and dims.fsdp_enabled and dims.tp_enabled and not dims.pp_enabled
    assert dims.dp_degree == 4
    single = ParallelDims(1, -1, 1, 1, 1)
    assert not single.dp_enabled and not single.fsdp_enabled


@pytest.mark.parametrize(
    ("degrees", "message"),
    [
        ((1, 3, 1, 1, 4), "must equal the world size 4"),
        ((1, -1, 3, 1, 4), "not divisible"),
        ((0, -1, 1, 1, 4), "data_parallel_replicate_degree must be >= 1"),
        ((1, 0, 1, 1, 4), "data_parallel_shard_degree must be -1 or >= 1"),
        ((1, -1, 1, 1, 4, 3), "expert_parallel_degree 3 must divide the data-parallel shard"),
        ((1, 2, 2, 1, 4, 4), "expert_parallel_degree 4 must divide the data-parallel shard"),
        ((2, -1, 1, 1, 4, 2), "with data_parallel_replicate_degree > 1"),
        ((1, -1, 1, 1, 4, 0), "expert_parallel_degree must be >= 1"),
    ],
)
def test_parallel_dims_reject_impossible_degrees(degrees, message):
    with pytest.raises(ConfigError, match=message):
        ParallelDims(*degrees)


def test_parallel_dims_check_model():
    dims = ParallelDims(1, 1, 4, 2, 8)
    dims.check_model(n_layers=4, n_heads=8, n_kv_heads=4)
    with pytest.raises(ConfigError, match="kv heads 2"):
        dims.check_model(n_layers=4, n_heads=8, n_kv_heads=2)
    with pytest.raises(ConfigError, match="number of heads 6"):
        dims.check_model(n_layers=4, n_heads=6, n_kv_heads=6)
    with pytest.raises(ConfigError, match="exceeds the number of layers 1"):
        dims.check_model(n_layers=1, n_heads=8, n_kv_heads=8)


def test_stage_split_is_balanced_and_complete():
    stages = generate_module_names_per_stage(2, 4)
    assert stages == [
        ["tok_embeddings", "layers.0", "layers.1"],
        ["layers.2", "layers.3", "norm", "output"],
    ]
    stages = generate_module_names_per_stage(4, 8, input_weight=1, output_weight=3)
    flat = [name for stage in stages for name in stage]
    assert flat == ["tok_embeddings", *[f"layers.{i}" for i in range(8)], "norm", "output"]
    layer_counts = [sum(name.startswith("layers.") for name in stage) for stage in stages]
    assert stages[-1][-2:] == ["norm", "output"]
    assert min(layer_counts) == layer_counts[-1] == 1
    with pytest.raises(ConfigError, match="3 stages but only 2 layers"):
        generate_module_names_per_stage(3, 2)


class _Decoder(nn.Module):
    """Top-level modules as a package's Transformer has them, with an extra input module."""

    def __init__(self) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(8, 4)
        self.pos_embeddings = nn.Embedding(8, 4)
        self.layers = nn.ModuleDict({str(i): nn.Linear(4, 4) for i in range(4)})
        self.norm = nn.LayerNorm(4)
        self.output = nn.Linear(4, 8)


def test_the_package_names_its_input_modules():
    inputs = ("tok_embeddings", "pos_embeddings")
    stages = generate_module_names_per_stage(2, 4, input_modules=inputs)
    assert stages[0] == ["tok_embeddings", "pos_embeddings", "layers.0", "layers.1"]
    first, last = (split_model(_Decoder(), names, stages) for names in stages)
    assert first.pos_embeddings is not None and first.tok_embeddings is not None
    assert (first.norm, first.output, list(first.layers)) == (None, None, ["0", "1"])
    assert (last.tok_embeddings, last.pos_embeddings) == (None, None)
    assert last.norm is not None and list(last.layers) == ["2", "3"]
    # An input module the package does not name would be copied to every stage: refused.
    stages = generate_module_names_per_stage(2, 4)
    with pytest.raises(ConfigError) as error:
        split_model(_Decoder(), stages[0], stages)
    assert str(error.value) == (
        "pipeline: top-level module(s) pos_embeddings are in no stage; name them in the "
        "package's input_modules or module_names_per_stage"
    )


def test_parallel_dims_check_experts():
    dims = ParallelDims(1, -1, 1, 1, 4, ep=4)
    dims.check_experts(8)
    with pytest.raises(ConfigError, match="must divide the number of experts 6"):
        dims.check_experts(6)
    with pytest.raises(ConfigError, match="needs a model with experts"):
        dims.check_experts(None)
    ParallelDims(1, -1, 1, 1, 4).check_experts(None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--training.max_norm", "-1"], "training.max_norm must be a finite number > 0"),
        (["--training.max_norm", "0"], "training.max_norm must be a finite number > 0"),
        (["--training.gc_freq", "0"], "training.gc_freq must be >= 1"),
        (["--metrics.log_freq", "0"], "metrics.log_freq must be >= 1"),
        (["--optimizer.lr", "nan"], "optimizer.lr must be a finite number >= 0"),
        (["--optimizer.lr", "-1"], "optimizer.lr must be a finite number >= 0"),
        (["--optimizer.beta2", "1.0"], r"optimizer.beta2 must be in \[0, 1\)"),
        (["--training.nonfinite_patience", "-1"], "nonfinite_patience must be >= 0"),
        (["--checkpoint.initial_load_path", "/nope/ckpt"], "initial_load_path not found"),
        (
            ["--training.dataset", "hf", "--training.dataset_path", "x"],
            "'hf' needs a tokenizer",
        ),
    ],
)
def test_values_a_worker_would_crash_on_are_refused_up_front(argv, message):
    with pytest.raises(ConfigError, match=message):
        JobConfig.load(argv)


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    toml = tmp_path / "latin1.toml"
    toml.write_bytes('[job]\ndescription = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        JobConfig.load(["--job.config_file", str(toml)])
