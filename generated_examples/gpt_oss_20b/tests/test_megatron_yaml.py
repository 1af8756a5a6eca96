"""The Primus/Megatron YAML in megatron/ resolves to exactly this package's architecture.

The experiment is resolved as the runtime resolves it without ``PRIMUS_PATH`` (no Primus file:
this package's model preset, not the Primus presets it extends, then the experiment's overrides)
and every architecture field is checked against ``ModelArgs.from_hf`` of the config.json this
package was generated from.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpt_oss_20b.model.args import ARCHITECTURE, ModelArgs
from runtime.config import JobConfig
from runtime.primus import (
    ARCHITECTURE_FIELDS,
    ResolvedModule,
    load_runtime_sections,
    megatron_to_runtime,
    resolve_experiment,
)

from .conftest import PACKAGE_DIR

MEGATRON_DIR = PACKAGE_DIR / "megatron"
EXPERIMENT = MEGATRON_DIR / "exp_pretrain.yaml"
# Fields Primus takes from the experiment rather than from a model preset.
TRAINER_FIELDS = ("seq_length", "make_vocab_size_divisible_by")


@pytest.fixture(scope="module")
def args() -> ModelArgs:
    """The full-size model arguments from the package's hf_config.json."""
    with open(PACKAGE_DIR / "hf_config.json", encoding="utf-8") as f:
        return ModelArgs.from_hf(json.load(f))


@pytest.fixture(scope="module")
def module() -> ResolvedModule:
    """The experiment's pre_trainer module, resolved without environment overrides."""
    return resolve_experiment(EXPERIMENT, environ={}).modules["pre_trainer"]


def test_experiment_resolves_its_own_presets(module: ResolvedModule):
    experiment = resolve_experiment(EXPERIMENT, environ={})
    assert experiment.exp_name == "gpt_oss_20b-pretrain"
    assert experiment.workspace == "./output"
    assert module.framework == "megatron"
    # No Primus file is read without PRIMUS_PATH: the model preset comes from this package (where
    # a user copies it from into Primus), and the Primus presets it needs are reported unread.
    assert module.config_file is None
    model_file = MEGATRON_DIR / "models" / "gpt_oss_20b.yaml"
    assert module.model_file == model_file
    assert [str(preset) for preset in experiment.unread] == [
        "primus/configs/modules/megatron/pre_trainer.yaml (module preset)",
        f"primus/configs/models/megatron/language_model.yaml (extended by {model_file.name})",
    ]


def test_model_preset_matches_model_args(module: ResolvedModule, args: ModelArgs):
    gqa = args.n_kv_heads < args.n_heads
    expected: dict[str, Any] = {
        "num_layers": args.n_layers,
        "hidden_size": args.dim,
        "ffn_hidden_size": args.ffn_dim,
        "num_attention_heads": args.n_heads,
        "group_query_attention": gqa,
        "kv_channels": args.head_dim,
        "max_position_embeddings": args.max_seq_len,
        "vocab_size": args.vocab_size,
        "layernorm_epsilon": args.norm_eps,
        "rotary_base": args.rope_theta,
        "init_method_std": args.initializer_range,
        "untie_embeddings_and_output_weights": not ARCHITECTURE["tie_word_embeddings"],
        "add_qkv_bias": ARCHITECTURE["attention_bias"],
        "add_bias_linear": True,
        "normalization": "RMSNorm",
        "swiglu": False,
        "position_embedding_type": "rope",
        "rotary_percent": 1.0,
        "rotary_interleaved": False,
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
    }
    if gqa:
        expected["num_query_groups"] = args.n_kv_heads
    preset = module.model_preset
    assert {key: preset[key] for key in expected} == expected
    # The preset states every architecture field the runtime reads itself: without PRIMUS_PATH,
    # Primus's language_model.yaml, which it extends, is not read.
    not_used = set() if gqa else {"num_query_groups"}
    assert [key for key in ARCHITECTURE_FIELDS if key not in preset and key not in not_used] == []
    # Numbers must be YAML numbers, not strings that merely print alike.
    assert isinstance(preset["layernorm_epsilon"], float)
    # sliding_window counts the query itself; Megatron's left window does not.
    assert preset["window_size"] == [args.sliding_window - 1, 0]
    # Layers numbered (from 1) by multiples of the skip frequency attend fully.
    assert preset["window_attn_skip_freq"] == args.sliding_window_pattern


def test_rope_scaling_fields(module: ResolvedModule, args: ModelArgs):
    expected = {
        "use_rope_scaling": False,
    }
    assert {key: module.model_preset[key] for key in expected} == expected


def test_trainer_fields_in_experiment(module: ResolvedModule, args: ModelArgs):
    for key in TRAINER_FIELDS:
        assert key not in module.model_preset
        assert key in module.overrides
    assert module.params["seq_length"] <= args.max_seq_len
    assert args.vocab_size % module.params["make_vocab_size_divisible_by"] == 0
    assert module.params["mock_data"] is True


def test_runtime_mapping_matches_args(module: ResolvedModule, args: ModelArgs):
    mapped = megatron_to_runtime(module)
    model_args = mapped["model_args"]
    for field in (
        "vocab_size",
        "dim",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "head_dim",
        "ffn_dim",
        "max_seq_len",
        "norm_eps",
        "rope_theta",
        "initializer_range",
    ):
        assert model_args[field] == getattr(args, field), field
    assert model_args["tie_word_embeddings"] == ARCHITECTURE["tie_word_embeddings"]
    assert model_args["mlp_bias"] is True
    # Megatron's add_bias_linear biases the attention projections as well as the MLP.
    assert model_args["attention_bias"] is True
    assert model_args["rope_type"] == "default"

    assert mapped["unsupported"] == []


def test_experiment_loads_as_runtime_config(module: ResolvedModule):
    sections = load_runtime_sections(EXPERIMENT, environ={})
    # The model preset describes the full-size model, so the runtime trains that flavor.
    assert sections["model"] == {"flavor": "20.9B"}
    config = JobConfig.from_dict(sections)
    assert config.training.dataset == "mock"
    assert config.training.seq_len == module.params["seq_length"]
    assert config.training.global_batch_size == module.params["global_batch_size"]
    assert config.training.global_batch_size % config.training.local_batch_size == 0
