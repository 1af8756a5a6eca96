"""Spec derivation: TinyLlama's facts, rope styles, and one-line errors for bad fields."""

from __future__ import annotations

import dataclasses
import math

import pytest

from scaffolder.errors import ScaffoldError
from scaffolder.families import build_spec
from scaffolder.features import CheckpointLayout, QKNorm, SlidingWindow
from scaffolder.views.adapter import adapter_view
from scaffolder.views.megatron import megatron_view
from tests.helpers import family_config, tinyllama_config


def _assert_names_field(config: dict, field: str) -> None:
    """``build_spec(config)`` fails with a one-line ScaffoldError that names ``field``."""
    with pytest.raises(ScaffoldError) as error:
        build_spec(config)
    message = str(error.value)
    assert field in message
    assert "\n" not in message


def test_tinyllama_spec() -> None:
    spec = build_spec(tinyllama_config())
    assert (spec.family, spec.hf_architecture) == ("llama", "LlamaForCausalLM")
    assert (spec.vocab_size, spec.dim, spec.n_layers) == (32000, 2048, 22)
    assert (spec.n_heads, spec.n_kv_heads, spec.head_dim, spec.ffn_dim) == (32, 4, 64, 5632)
    assert spec.max_seq_len == 2048 and spec.norm_eps == 1e-5
    assert spec.rope.type == "default" and spec.rope.theta == 10000.0
    assert not spec.tie_word_embeddings and not spec.attention_bias and not spec.mlp_bias
    assert spec.torch_dtype == "bfloat16"
    assert spec.num_params() == 1_100_048_384
    assert spec.size_name == "1.1B"


def test_debug_dims_keep_features() -> None:
    spec = build_spec(tinyllama_config())
    debug = spec.debug_dims()
    assert debug["n_heads"] // debug["n_kv_heads"] == spec.n_heads // spec.n_kv_heads
    explicit = build_spec(tinyllama_config(head_dim=128))
    assert explicit.explicit_head_dim
    d = explicit.debug_dims()
    assert d["head_dim"] * d["n_heads"] != d["dim"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            {"rope_theta": 500000.0, "rope_scaling": {"type": "linear", "factor": 2.0}},
            {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 500000.0}},
        ),
        (
            {"rope_theta": 10000.0, "rope_scaling": {"type": "dynamic", "factor": 4.0}},
            {"rope_parameters": {"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0}},
        ),
        (
            {
                "rope_theta": 500000.0,
                "max_position_embeddings": 131072,
                "rope_scaling": {
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192,
                },
            },
            {
                "max_position_embeddings": 131072,
                "rope_parameters": {
                    "rope_type": "llama3",
                    "rope_theta": 500000.0,
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192,
                },
            },
        ),
    ],
)
def test_old_and_new_rope_styles_give_the_same_spec(old: dict, new: dict) -> None:
    old_spec = build_spec(tinyllama_config(**old))
    new_spec = build_spec(tinyllama_config(rope_theta=None, rope_scaling=None, **new))
    assert old_spec == new_spec
    assert old_spec.rope.type != "default"


def test_defaults_come_from_transformers() -> None:
    spec = build_spec(tinyllama_config(rms_norm_eps=None, num_key_value_heads=None))
    assert spec.norm_eps == 1e-6  # LlamaConfig's default
    assert spec.n_kv_heads == spec.n_heads


def test_unknown_harmless_keys_are_ignored() -> None:
    assert build_spec(tinyllama_config(my_metadata={"x": 1})) == build_spec(tinyllama_config())


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hidden_size": 2050}, "hidden_size"),
        ({"num_key_value_heads": 5}, "num_key_value_heads"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"vocab_size": -3}, "vocab_size"),
        ({"num_hidden_layers": True}, "num_hidden_layers"),
        ({"intermediate_size": 5632.0}, "intermediate_size"),
        ({"rms_norm_eps": math.nan}, "rms_norm_eps"),
        ({"rms_norm_eps": "1e-5"}, "rms_norm_eps"),
        ({"tie_word_embeddings": 1}, "tie_word_embeddings"),
        ({"model_type": "llama_x"}, "model_type"),
        ({"model_type": None}, "model_type"),
        ({"rope_scaling": {"type": "yarnish", "factor": 2.0}}, "rope_scaling.type"),
        ({"rope_scaling": {"type": "linear", "factor": "2"}}, "factor"),
        ({"hidden_act": "relu"}, "hidden_act"),
        ({"vocab_size": None}, "vocab_size"),
    ],
)
def test_bad_fields_name_the_field(changes: dict, field: str) -> None:
    _assert_names_field(tinyllama_config(**changes), field)


def test_custom_code_is_refused_without_running_it() -> None:
    config = tinyllama_config(
        model_type="evil",
        architectures=["EvilForCausalLM"],
        auto_map={"AutoConfig": "evil.Config"},
    )
    with pytest.raises(ScaffoldError, match="never executed"):
        build_spec(config)


def test_unknown_model_type_of_a_supported_architecture_says_what_to_set() -> None:
    """Kimi-K2: model_type kimi_k2 with its own auto_map code, DeepseekV3ForCausalLM weights."""
    config = family_config(
        "deepseek_v3",
        model_type="kimi_k2",
        auto_map={"AutoConfig": "configuration_deepseek.DeepseekV3Config"},
    )
    with pytest.raises(ScaffoldError) as error:
        build_spec(config)
    message = str(error.value)
    assert "'kimi_k2'" in message and "DeepseekV3ForCausalLM" in message
    assert '"model_type": "deepseek_v3"' in message and "never run" in message


def test_deepseek_v3_spec() -> None:
    spec = build_spec(family_config("deepseek_v3"))
    latent, moe = spec.features.latent_attention, spec.features.moe
    assert (latent.q_lora_rank, latent.kv_lora_rank, latent.qk_rope_head_dim) == (1536, 512, 64)
    assert latent.interleaved
    assert (moe.num_experts, moe.top_k, moe.first_dense, moe.balancing) == (
        256,
        8,
        3,
        "expert_bias",
    )
    routing = moe.group_routing
    assert (routing.scoring, routing.n_group, routing.topk_group) == ("sigmoid", 8, 4)
    assert routing.bias_name == "e_score_correction_bias"
    assert any("num_nextn_predict_layers" in warning for warning in spec.warnings)
    assert any("quantization_config" in warning for warning in spec.warnings)
    debug = spec.debug_dims()
    assert (debug["n_group"], debug["topk_group"], debug["first_k_dense_replace"]) == (4, 2, 1)
    assert spec.num_params() == 671_026_404_352  # DeepseekV3ForCausalLM on the meta device
    moonlight = build_spec(family_config("moonlight"))
    assert moonlight.features.latent_attention.q_lora_rank is None
    assert "q_lora_rank" not in moonlight.debug_dims()
    assert moonlight.num_params() == 15_960_108_544


def test_deepseek_v2_spec() -> None:
    spec = build_spec(family_config("deepseek_v2_lite"))
    assert (spec.family, spec.hf_architecture) == ("deepseek_v2", "DeepseekV2ForCausalLM")
    latent, moe = spec.features.latent_attention, spec.features.moe
    assert latent.q_lora_rank is None and latent.interleaved
    routing = moe.group_routing
    assert (routing.scoring, routing.grouped, routing.method) == ("softmax", False, "greedy")
    assert routing.bias_name is None and moe.balancing == "none"
    assert (moe.first_dense, moe.shared_ffn_dim, moe.renormalize) == (1, 2 * 1408, False)
    assert "n_group" not in spec.debug_dims()
    assert spec.num_params() == 15_706_484_224  # DeepseekV2ForCausalLM on the meta device
    grouped = build_spec(
        family_config(
            "deepseek_v2_lite", topk_method="group_limited_greedy", n_group=8, topk_group=3
        )
    )
    assert grouped.features.moe.group_routing.grouped
    assert (grouped.debug_dims()["n_group"], grouped.debug_dims()["topk_group"]) == (4, 2)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"moe_layer_freq": 2}, "moe_layer_freq"),
        ({"norm_topk_prob": True}, "norm_topk_prob"),
        ({"topk_method": "noaux_tc"}, "topk_method"),
        ({"scoring_func": "sigmoid"}, "scoring_func"),
        ({"n_shared_experts": 0}, "n_shared_experts"),
    ],
)
def test_deepseek_v2_refusals_name_the_field(changes: dict, field: str) -> None:
    _assert_names_field(family_config("deepseek_v2_lite", **changes), field)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_group": 3}, "n_group"),
        ({"topk_group": 9}, "topk_group"),
        ({"num_key_value_heads": 64}, "num_key_value_heads"),
        ({"scoring_func": "softmax"}, "scoring_func"),
        ({"first_k_dense_replace": 61}, "first_k_dense_replace"),
    ],
)
def test_deepseek_v3_refusals_name_the_field(changes: dict, field: str) -> None:
    _assert_names_field(family_config("deepseek_v3", **changes), field)


# ---------------------------------------------------------------- mistral, qwen2, qwen3, olmo2,
# granite, phi3: hub-shaped configs in tests/configs/


def test_mistral_spec() -> None:
    spec = build_spec(family_config("mistral"))
    assert (spec.family, spec.hf_architecture) == ("mistral", "MistralForCausalLM")
    assert spec.features.sliding_window == SlidingWindow(4096, layout="all")
    assert spec.debug_dims()["sliding_window"] < 64  # shorter than the generated tests' sequences
    assert not spec.attention_bias and not spec.mlp_bias
    assert spec.num_params() == 7_241_732_096
    nemo = build_spec(family_config("mistral_nemo"))
    assert nemo.features.sliding_window.window is None and "sliding_window" not in nemo.debug_dims()
    assert nemo.explicit_head_dim and nemo.head_dim == 128


def test_mistral_without_sliding_window_gets_transformers_default() -> None:
    from transformers import MistralConfig

    spec = build_spec(family_config("mistral", sliding_window=None))
    assert spec.features.sliding_window.window == MistralConfig().sliding_window
    assert spec.config_fields.defaults["sliding_window"] == MistralConfig().sliding_window


def test_mistral_ignores_bias_fields_as_transformers_does() -> None:
    """MistralConfig has no attention_bias: transformers builds a bias-free model regardless."""
    spec = build_spec(family_config("mistral", attention_bias=True))
    assert not spec.attention_bias


def test_qwen2_spec() -> None:
    spec = build_spec(family_config("qwen2"))
    assert (spec.family, spec.hf_architecture) == ("qwen2", "Qwen2ForCausalLM")
    assert spec.features.biases.qkv_only and not spec.attention_bias and not spec.mlp_bias
    assert spec.tie_word_embeddings
    assert spec.features.sliding_window.window is None  # use_sliding_window false
    assert spec.num_params() == 494_032_768


@pytest.mark.parametrize(
    ("changes", "window", "max_window_layers", "debug"),
    [
        # Layers max_window_layers and up slide; the debug flavor keeps both kinds.
        ({"use_sliding_window": True, "max_window_layers": 21}, 32768, 21, 3),
        ({"use_sliding_window": True, "max_window_layers": 0, "sliding_window": 64}, 64, 0, 0),
        # Nothing slides: max_window_layers covers every layer, or use_sliding_window is false.
        ({"use_sliding_window": True, "max_window_layers": 24}, None, None, None),
        ({"use_sliding_window": False, "max_window_layers": 2}, None, None, None),
        # New style: layer_types wins over max_window_layers, as in transformers.
        (
            {
                "use_sliding_window": True,
                "max_window_layers": 2,
                "layer_types": ["full_attention"] * 20 + ["sliding_attention"] * 4,
            },
            32768,
            20,
            3,
        ),
    ],
)
def test_qwen2_sliding_layers_follow_transformers(
    changes: dict, window: int | None, max_window_layers: int | None, debug: int | None
) -> None:
    from transformers import Qwen2Config

    config = family_config("qwen2", **changes)
    spec = build_spec(config)
    assert spec.features.sliding_window.window == window
    assert spec.features.sliding_window.max_window_layers == max_window_layers
    hf = Qwen2Config(**{k: v for k, v in config.items() if k != "model_type"})
    sliding = [i for i, kind in enumerate(hf.layer_types) if kind == "sliding_attention"]
    assert sliding == ([] if window is None else list(range(max_window_layers, 24)))
    if debug is not None:
        assert spec.debug_dims()["max_window_layers"] == debug
        assert spec.debug_dims()["sliding_window"] < 64


def test_qwen3_spec() -> None:
    from transformers import Qwen3Config

    spec = build_spec(family_config("qwen3"))
    assert (spec.family, spec.hf_architecture) == ("qwen3", "Qwen3ForCausalLM")
    assert spec.features.qk_norm == QKNorm("per_head") and not spec.attention_bias
    assert spec.head_dim == 128 and spec.explicit_head_dim and spec.tie_word_embeddings
    assert spec.num_params() == 596_049_920  # Qwen3-0.6B
    # Without head_dim, Qwen3Config's default (128) stands, not hidden_size / heads (64).
    assert build_spec(family_config("qwen3", head_dim=None)).head_dim == Qwen3Config().head_dim
    sliding = build_spec(
        family_config(
            "qwen3",
            use_sliding_window=True,
            sliding_window=4096,
            layer_types=["full_attention"] * 24 + ["sliding_attention"] * 4,
        )
    )
    assert (
        sliding.features.sliding_window.window,
        sliding.features.sliding_window.max_window_layers,
    ) == (4096, 24)


def test_olmo2_spec() -> None:
    spec = build_spec(family_config("olmo2"))
    assert (spec.family, spec.hf_architecture) == ("olmo2", "Olmo2ForCausalLM")
    assert spec.parts["block"] == "block_post_norm"
    assert spec.features.qk_norm == QKNorm("projection")
    assert spec.features.norm.placement == "post"
    assert spec.num_params() == 7_298_617_344  # OLMo-2-1124-7B
    assert spec.features.padding.pad_token_id == 100277 and spec.debug_dims()["pad_token_id"] == 0
    # Post-norms and whole-projection q/k norms: not in Megatron.
    assert len(megatron_view(spec).not_expressible) == 2
    # Without pad_token_id, Olmo2Config's default (1) is the padding row.
    assert build_spec(family_config("olmo2", pad_token_id=None)).features.padding.pad_token_id == 1


def test_granite_spec() -> None:
    spec = build_spec(family_config("granite"))
    assert (spec.family, spec.hf_architecture) == ("granite", "GraniteForCausalLM")
    assert spec.num_params() == 2_533_531_648  # granite-3.0-2b-base
    features = spec.features
    assert (features.multipliers.embedding, features.multipliers.residual) == (12.0, 0.22)
    assert (features.multipliers.attention, features.multipliers.logits) == (0.015625, 8.0)
    assert features.attention_dropout == 0.1
    assert spec.debug_dims()["attention_dropout"] == 0.0  # exact training-mode comparisons
    assert features.padding.pad_token_id == 0 and spec.tie_word_embeddings
    assert any("residual_multiplier" in note for note in megatron_view(spec).not_expressible)
    plain = build_spec(family_config("granite", attention_dropout=0.0))
    assert plain.features.attention_dropout is None


def test_phi3_spec() -> None:
    spec = build_spec(family_config("phi3"))
    assert (spec.family, spec.hf_architecture) == ("phi3", "Phi3ForCausalLM")
    assert spec.num_params() == 3_821_079_552  # Phi-3.5-mini
    assert spec.features.fused_checkpoint and not spec.attention_bias
    assert (spec.rope.type, spec.rope.original_max_position_embeddings) == ("longrope", 4096)
    assert len(spec.features.longrope.long_factor) == 48  # head_dim 96 / 2
    # transformers' default: factor 131072 / 4096 = 32 -> sqrt(1 + ln 32 / ln 4096).
    assert spec.features.longrope.attention_factor == pytest.approx(1.1902380714)
    assert (
        spec.features.padding.pad_token_id == 32000
        and spec.features.sliding_window.window == 262144
    )
    assert any("LongRoPE" in note for note in megatron_view(spec).not_expressible)
    debug = spec.debug_dims()
    assert debug["rope_original_max_seq_len"] < 64 and debug["sliding_window"] < 64
    assert len(debug["rope_short_factor"]) == debug["head_dim"] // 2
    assert debug["pad_token_id"] < debug["vocab_size"]
    phi4 = build_spec(family_config("phi4_mini"))
    assert phi4.features.partial_rotary.factor == 0.75 and phi4.tie_word_embeddings
    d = phi4.debug_dims()
    rotary_dim = int(d["head_dim"] * 0.75)
    assert rotary_dim % 2 == 0 and len(d["rope_long_factor"]) == rotary_dim // 2
    assert d["dim"] == d["n_heads"] * d["head_dim"]
    # "su" is transformers' old name of longrope (it then wants the pretraining length inside
    # rope_scaling); Phi-3 mini 4k has plain rope.
    old = family_config("phi3")
    old["rope_scaling"] = dict(
        old["rope_scaling"], type="su", original_max_position_embeddings=4096
    )
    assert build_spec(old) == spec
    plain = build_spec(family_config("phi3", rope_scaling=None, max_position_embeddings=4096))
    assert plain.rope.type == "default" and plain.features.longrope is None


@pytest.mark.parametrize(
    ("name", "changes", "field"),
    [
        ("qwen3", {"attention_bias": "false"}, "attention_bias"),
        ("qwen3", {"head_dim": 0}, "head_dim"),
        ("qwen3", {"layer_types": ["full_attention"] * 27}, "layer_types"),
        (
            "qwen3",
            {"rope_scaling": {"rope_type": "longrope", "factor": 4.0}},
            "rope_scaling.rope_type",
        ),
        ("olmo2", {"attention_bias": 1}, "attention_bias"),
        ("olmo2", {"pad_token_id": 100352}, "pad_token_id"),
        ("olmo2", {"hidden_act": "gelu"}, "hidden_act"),
        ("olmo2", {"rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, "rope_scaling"),
        ("granite", {"embedding_multiplier": "12"}, "embedding_multiplier"),
        ("granite", {"logits_scaling": 0}, "logits_scaling"),
        ("granite", {"residual_multiplier": -0.2}, "residual_multiplier"),
        ("granite", {"attention_multiplier": True}, "attention_multiplier"),
        ("granite", {"attention_dropout": 1.0}, "attention_dropout"),
        ("granite", {"attention_dropout": -0.1}, "attention_dropout"),
        ("phi3", {"resid_pdrop": 0.1}, "resid_pdrop"),
        ("phi3", {"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "rope_scaling.type"),
        (
            "phi3",
            {"rope_scaling": {"type": "longrope", "short_factor": [1.0], "long_factor": [1.0]}},
            "short_factor",
        ),
        ("phi4_mini", {"partial_rotary_factor": 1.5}, "partial_rotary_factor"),
        ("phi4_mini", {"partial_rotary_factor": 0.005}, "partial_rotary_factor"),
        ("phi4_mini", {"partial_rotary_factor": "0.75"}, "partial_rotary_factor"),
        ("phi3", {"sliding_window": -1}, "sliding_window"),
        ("phi3", {"pad_token_id": 32064}, "pad_token_id"),
        ("mistral", {"sliding_window": 0}, "sliding_window"),
        ("qwen2", {"use_sliding_window": "yes"}, "use_sliding_window"),
        ("mixtral", {"num_experts_per_tok": 9}, "num_experts_per_tok"),
        ("mixtral", {"num_local_experts": 0}, "num_local_experts"),
        ("mixtral", {"router_jitter_noise": 1.5}, "router_jitter_noise"),
        ("qwen3_moe", {"num_experts": 0}, "num_experts"),
        ("qwen3_moe", {"norm_topk_prob": "true"}, "norm_topk_prob"),
        ("qwen3_moe", {"mlp_only_layers": [48]}, "mlp_only_layers"),
        ("qwen3_moe", {"decoder_sparse_step": 0}, "decoder_sparse_step"),
        ("qwen3_moe", {"use_sliding_window": True}, "use_sliding_window"),
        ("qwen2_moe", {"mlp_only_layers": list(range(24))}, "mlp_only_layers"),
        ("qwen2_moe", {"qkv_bias": False}, "qkv_bias"),
        ("olmoe", {"clip_qkv": 8.0}, "clip_qkv"),
        ("granitemoe", {"router_aux_loss_coef": -1}, "router_aux_loss_coef"),
        ("qwen2", {"max_window_layers": -1}, "max_window_layers"),
        ("qwen2", {"max_window_layers": 2.5}, "max_window_layers"),
        ("qwen2", {"sliding_window": 0, "use_sliding_window": True}, "sliding_window"),
        ("qwen2", {"layer_types": ["full_attention", "chunked_attention"] * 12}, "layer_types"),
        (
            "qwen2",
            {
                "use_sliding_window": True,
                "layer_types": ["sliding_attention", "full_attention"] * 12,
            },
            "layer_types",
        ),
        (
            "qwen2",
            {
                "use_sliding_window": False,
                "layer_types": ["full_attention"] * 23 + ["sliding_attention"],
            },
            "layer_types",
        ),
        ("qwen2", {"rope_scaling": {"type": "longrope", "factor": 4.0}}, "rope_scaling.type"),
        ("mistral", {"sliding_window": "4096"}, "sliding_window"),
        ("mistral", {"sliding_window": 4096.5}, "sliding_window"),
        ("mistral", {"sliding_window": True}, "sliding_window"),
        ("mistral", {"rope_scaling": {"type": "longrope", "factor": 4.0}}, "rope_scaling.type"),
    ],
)
def test_bad_family_fields_name_the_field(name: str, changes: dict, field: str) -> None:
    _assert_names_field(family_config(name, **changes), field)


# ---------------------------------------------------------------- YaRN (any family's rope)

YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}


@pytest.mark.parametrize(
    "scaling",
    [
        YARN,  # Qwen2.5's long-context setting: transformers' defaults for the rest
        # DeepSeek-style: mscale over mscale_all_dim, explicit betas.
        {
            "rope_type": "yarn",
            "factor": 40.0,
            "original_max_position_embeddings": 4096,
            "beta_fast": 32,
            "beta_slow": 1,
            "mscale": 1.0,
            "mscale_all_dim": 0.8,
        },
        # gpt-oss-style: unrounded ramp bounds.
        {
            "rope_type": "yarn",
            "factor": 32.0,
            "original_max_position_embeddings": 4096,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "truncate": False,
        },
        # An explicit attention factor wins over mscale; beta 0 / null take the defaults.
        {
            "rope_type": "yarn",
            "factor": 8.0,
            "attention_factor": 1.25,
            "mscale": 1.0,
            "mscale_all_dim": 2.0,
            "beta_fast": 0,
            "beta_slow": None,
        },
    ],
)
def test_yarn_reads_as_transformers_computes_it(scaling: dict) -> None:
    """The spec's YaRN settings are the values transformers' _compute_yarn_parameters uses."""
    from transformers import Qwen2Config
    from transformers.modeling_rope_utils import _compute_yarn_parameters

    config = family_config("qwen2", rope_scaling=scaling)
    rope = build_spec(config).rope
    hf = Qwen2Config(**{k: v for k, v in config.items() if k != "model_type"})
    _, attention_factor = _compute_yarn_parameters(hf)
    assert rope.type == "yarn" and rope.factor == scaling["factor"]
    assert rope.attention_factor == pytest.approx(attention_factor, rel=1e-15)
    assert rope.attention_factor_inferred == ("attention_factor" not in scaling)
    assert rope.original_max_position_embeddings == scaling.get(
        "original_max_position_embeddings", config["max_position_embeddings"]
    )
    assert (rope.beta_fast, rope.beta_slow) == (
        scaling.get("beta_fast") or 32.0,
        scaling.get("beta_slow") or 1.0,
    )
    assert rope.truncate == scaling.get("truncate", True)
    assert (rope.mscale, rope.mscale_all_dim) == (
        scaling.get("mscale"),
        scaling.get("mscale_all_dim"),
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"factor": 0.5}, "rope_scaling.factor"),
        ({"factor": None}, "rope_scaling.factor"),
        ({"factor": "4"}, "rope_scaling.factor"),
        ({"original_max_position_embeddings": 0}, "rope_scaling.original_max_position_embeddings"),
        ({"beta_fast": 1.0, "beta_slow": 2.0}, "rope_scaling.beta_fast"),
        ({"beta_slow": -1.0}, "rope_scaling.beta_slow"),
        ({"mscale": -1.0, "mscale_all_dim": 1.0}, "rope_scaling.mscale"),
        ({"mscale_all_dim": math.inf}, "rope_scaling.mscale_all_dim"),
        ({"attention_factor": 0.0}, "rope_scaling.attention_factor"),
        ({"truncate": "no"}, "rope_scaling.truncate"),
        ({"rope_theta": 1.0}, "rope_theta"),
    ],
)
def test_bad_yarn_fields_name_the_field(changes: dict, field: str) -> None:
    _assert_names_field(family_config("qwen2", rope_scaling={**YARN, **changes}), field)


# ---------------------------------------------------------------- gemma, gemma2, gemma3_text


def test_gemma_spec() -> None:
    spec = build_spec(family_config("gemma"))
    assert (spec.family, spec.hf_architecture) == ("gemma", "GemmaForCausalLM")
    assert spec.hidden_act == "gelu_pytorch_tanh"  # the legacy "gelu", as transformers reads it
    assert spec.explicit_head_dim and spec.head_dim == 256
    assert spec.tie_word_embeddings and not spec.mlp_bias
    assert spec.features.norm.kind == "rmsnorm_1p" and spec.features.scale_embeddings
    assert spec.features.padding.pad_token_id == 0
    assert spec.num_params() == 8_537_680_896  # GemmaForCausalLM on the meta device
    notes = megatron_view(spec).not_expressible  # GeGLU and the embedding scale
    assert any("GeGLU" in note for note in notes) and any("sqrt" in note for note in notes)


def test_gemma2_spec() -> None:
    spec = build_spec(family_config("gemma2"))
    assert spec.parts["attention"] == "attention_softcap"
    assert spec.parts["block"] == "block_sandwich_norm"
    features = spec.features
    assert features.softcap.attention == 50.0
    assert features.softcap.final == 30.0
    assert features.query_pre_attn_scalar == 256
    assert (features.sliding_window.window, features.sliding_window.pattern) == (4096, 2)
    assert spec.debug_dims()["sliding_window"] < 64
    assert spec.num_params() == 9_241_705_984


def test_gemma2_without_attention_softcap_uses_fused_attention() -> None:
    config = family_config("gemma2")
    config["attn_logit_softcapping"] = None  # null in config.json (family_config deletes None)
    spec = build_spec(config)
    assert spec.parts["attention"] == "attention"
    assert spec.features.softcap.attention is None


def test_gemma3_spec_and_old_and_new_field_styles() -> None:
    old = build_spec(family_config("gemma3_text"))
    assert old.features.qk_norm == QKNorm("per_head")
    assert old.features.sliding_window.pattern == 6
    assert old.rope.theta == 1_000_000.0 and old.features.local_rope.theta == 10_000.0
    # 4 debug layers: 3 sliding, 1 full.
    assert old.debug_dims()["sliding_window_pattern"] == 4
    assert old.num_params() == 999_885_952
    new = family_config(
        "gemma3_text",
        rope_theta=None,
        rope_local_base_freq=None,
        rope_scaling=None,
        sliding_window_pattern=None,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
        layer_types=[
            "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(26)
        ],
    )
    assert build_spec(new) == old
    scaled = build_spec(family_config("gemma3_text_scaled"))
    assert (scaled.rope.type, scaled.rope.factor) == ("linear", 8.0)
    assert scaled.features.local_rope.type == "default"


@pytest.mark.parametrize(
    ("name", "changes", "field"),
    [
        ("gemma", {"hidden_act": "relu"}, "hidden_act"),
        ("gemma", {"hidden_activation": "gelu"}, "hidden_activation"),
        ("gemma", {"head_dim": None}, "head_dim"),
        ("gemma", {"num_key_value_heads": None}, "num_key_value_heads"),
        ("gemma", {"use_bidirectional_attention": True}, "use_bidirectional_attention"),
        ("gemma", {"pad_token_id": -1}, "pad_token_id"),
        ("gemma", {"pad_token_id": 256000}, "pad_token_id"),
        ("gemma2", {"hidden_activation": "silu"}, "hidden_activation"),
        ("gemma2", {"attn_logit_softcapping": 0.0}, "attn_logit_softcapping"),
        ("gemma2", {"final_logit_softcapping": "30"}, "final_logit_softcapping"),
        ("gemma2", {"query_pre_attn_scalar": 256.5}, "query_pre_attn_scalar"),
        ("gemma2", {"layer_types": ["full_attention", "sliding_attention"] * 21}, "layer_types"),
        ("gemma2", {"layer_types": ["sliding_attention"] * 42}, "layer_types"),
        ("gemma2", {"layer_types": ["chunked_attention", "full_attention"] * 21}, "layer_types"),
        ("gemma3_text", {"attn_logit_softcapping": 50.0}, "attn_logit_softcapping"),
        ("gemma3_text", {"rope_scaling": {"type": "linear", "factor": 8.0}}, "rope_scaling.type"),
        (
            "gemma3_text",
            {"rope_parameters": {"full_attention": {"rope_type": "yarn", "factor": 8.0}}},
            "rope_parameters.full_attention.rope_type",
        ),
        ("gemma3_text", {"rope_scaling": {"rope_type": "yarn", "factor": 8.0}}, "rope_type"),
        ("gemma3_text", {"rope_local_base_freq": "10000"}, "rope_local_base_freq"),
        ("gemma3_text", {"sliding_window_pattern": 1}, "layer_types"),
    ],
)
def test_bad_gemma_fields_name_the_field(name: str, changes: dict, field: str) -> None:
    _assert_names_field(family_config(name, **changes), field)


@pytest.mark.parametrize(
    ("name", "field"),
    [("gemma2", "sliding_window"), ("gemma3_text", "sliding_window"), ("gemma", "hidden_act")],
)
def test_null_gemma_fields_name_the_field(name: str, field: str) -> None:
    config = family_config(name)
    config[field] = None  # null in config.json (family_config deletes None)
    with pytest.raises(ScaffoldError, match=field):
        build_spec(config)


# ---------------------------------------------------------------- starcoder2


def test_starcoder2_spec() -> None:
    spec = build_spec(family_config("starcoder2"))
    assert (spec.family, spec.hf_architecture) == ("starcoder2", "Starcoder2ForCausalLM")
    assert spec.parts["feed_forward"] == "feed_forward_gelu"
    assert spec.features.norm.kind == "layernorm" and spec.norm_eps == 1e-5
    assert spec.attention_bias and spec.mlp_bias  # use_bias
    assert spec.hidden_act == "gelu_pytorch_tanh"
    assert spec.features.sliding_window.window == 4096
    assert spec.tie_word_embeddings  # Starcoder2Config's default: the 3B config leaves it out
    assert spec.num_params() == 3_030_371_328  # Starcoder2ForCausalLM on the meta device
    assert any("dropout" in warning for warning in spec.warnings)
    plain = build_spec(family_config("starcoder2", use_bias=False, sliding_window=None))
    assert not plain.attention_bias and plain.features.sliding_window.window is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hidden_act": "silu"}, "hidden_act"),
        ({"hidden_act": "relu"}, "hidden_act"),
        ({"use_bias": "yes"}, "use_bias"),
        ({"norm_epsilon": "1e-5"}, "norm_epsilon"),
        ({"norm_epsilon": 0.0}, "norm_epsilon"),
        ({"sliding_window": 0}, "sliding_window"),
        ({"residual_dropout": 1.0}, "residual_dropout"),
        ({"num_key_value_heads": 5}, "num_key_value_heads"),
        ({"rope_scaling": {"type": "longrope", "factor": 4.0}}, "rope_scaling.type"),
    ],
)
def test_bad_starcoder2_fields_name_the_field(changes: dict, field: str) -> None:
    _assert_names_field(family_config("starcoder2", **changes), field)


# ---------------------------------------------------------------- gpt_neox


def test_gpt_neox_spec_and_old_and_new_rope_styles() -> None:
    spec = build_spec(family_config("gpt_neox"))
    assert (spec.family, spec.hf_architecture) == ("gpt_neox", "GPTNeoXForCausalLM")
    assert spec.parts["block"] == "block_parallel_residual"
    assert spec.features.checkpoint.qkv_per_head
    assert spec.n_kv_heads == spec.n_heads and spec.head_dim == 64
    assert spec.features.partial_rotary.factor == 0.25 and spec.rope.theta == 10000.0
    assert spec.attention_bias and spec.mlp_bias and not spec.tie_word_embeddings
    assert spec.num_params() == 162_322_944  # GPTNeoXForCausalLM on the meta device
    assert any("parallel_residual" in note for note in megatron_view(spec).not_expressible)
    new = family_config(
        "gpt_neox",
        rotary_emb_base=None,
        rotary_pct=None,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.25,
        },
    )
    assert build_spec(new) == spec
    sequential = build_spec(family_config("gpt_neox", use_parallel_residual=False))
    assert sequential.parts["block"] == "block_pre_norm"
    assert not any("parallel_residual" in n for n in megatron_view(sequential).not_expressible)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hidden_act": "silu"}, "hidden_act"),
        ({"rotary_pct": 1.5}, "rotary_pct"),
        ({"rotary_pct": 0.01}, "rotary_pct"),
        ({"rotary_pct": "0.25"}, "rotary_pct"),
        ({"use_parallel_residual": 1}, "use_parallel_residual"),
        ({"hidden_size": 770}, "hidden_size"),
        ({"layer_norm_eps": -1.0}, "layer_norm_eps"),
        ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "rope_scaling.type"),
        ({"hidden_dropout": 1.5}, "hidden_dropout"),
        ({"intermediate_size": None}, "intermediate_size"),
    ],
)
def test_bad_gpt_neox_fields_name_the_field(changes: dict, field: str) -> None:
    _assert_names_field(family_config("gpt_neox", **changes), field)


# ---------------------------------------------------------------- gpt2


def test_gpt2_spec() -> None:
    spec = build_spec(family_config("gpt2"))
    assert (spec.family, spec.hf_architecture) == ("gpt2", "GPT2LMHeadModel")
    assert spec.rope is None and "rope" not in spec.parts
    assert spec.parts["transformer"] == "transformer_learned_positions"
    assert (spec.dim, spec.n_layers, spec.n_heads, spec.head_dim) == (768, 12, 12, 64)
    assert spec.ffn_dim == 4 * 768 and spec.max_seq_len == 1024  # n_inner null, n_positions
    assert spec.hidden_act == "gelu_new" and spec.norm_eps == 1e-5
    assert spec.tie_word_embeddings and spec.features.scale_attn_weights
    assert spec.num_params() == 124_439_808  # GPT2LMHeadModel on the meta device
    assert dict(spec.features.unapplied_dropout) == {
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attn_pdrop": 0.1,
    }
    untied = build_spec(family_config("gpt2", tie_word_embeddings=False, n_inner=2048))
    assert untied.ffn_dim == 2048 and untied.num_params() == 144_150_528


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"activation_function": "relu"}, "activation_function"),
        ({"n_embd": 770}, "n_embd"),
        ({"n_head": 0}, "n_head"),
        ({"n_inner": 2048.0}, "n_inner"),
        ({"n_positions": "1024"}, "n_positions"),
        ({"scale_attn_weights": "yes"}, "scale_attn_weights"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn"),
        ({"add_cross_attention": True}, "add_cross_attention"),
        ({"layer_norm_epsilon": 0}, "layer_norm_epsilon"),
        ({"resid_pdrop": 1.0}, "resid_pdrop"),
        ({"n_layer": None}, "n_layer"),
    ],
)
def test_bad_gpt2_fields_name_the_field(changes: dict, field: str) -> None:
    _assert_names_field(family_config("gpt2", **changes), field)


# ---------------------------------------------------------------- checkpoint layouts


def test_adapter_view_names_the_checkpoint_keys_of_each_layout() -> None:
    sandwich = dict(adapter_view(build_spec(family_config("gemma2"))).from_hf)
    assert (
        sandwich["model.layers.{}.pre_feedforward_layernorm.weight"] == "layers.{}.ffn_norm.weight"
    )
    assert sandwich["model.layers.{}.post_attention_layernorm.weight"] == (
        "layers.{}.post_attention_norm.weight"
    )
    gpt2 = adapter_view(build_spec(family_config("gpt2")))
    assert [f.theirs for f in gpt2.fused] == [
        "transformer.h.{}.attn.c_attn.weight",
        "transformer.h.{}.attn.c_attn.bias",
    ]
    assert "transformer.h.{}.attn.c_attn.weight" in gpt2.conv1d and gpt2.hub_prefix
    neox = adapter_view(build_spec(family_config("gpt_neox")))
    assert neox.per_head and neox.legacy_names == (("lm_head.weight", "embed_out.weight"),)
    assert not adapter_view(build_spec(tinyllama_config())).reads_older


def test_checkpoint_layout_refuses_what_the_adapter_cannot_express() -> None:
    with pytest.raises(ScaffoldError, match="qkv_per_head"):
        CheckpointLayout(qkv_per_head=True)
    spec = build_spec(tinyllama_config())
    clash = CheckpointLayout(k_proj="q_proj")
    features = dataclasses.replace(spec.features, checkpoint=clash)
    with pytest.raises(ScaffoldError, match="two tensors to one key"):
        adapter_view(dataclasses.replace(spec, features=features))


# ---------------------------------------------------------------- gpt_oss


def test_gpt_oss_spec() -> None:
    spec = build_spec(family_config("gpt_oss"))
    moe, rope = spec.features.moe, spec.rope
    assert spec.features.attention_sinks and spec.attention_bias
    assert (moe.num_experts, moe.top_k, moe.ffn_dim, moe.routing) == (32, 4, 2880, "topk_softmax")
    assert moe.router_bias and moe.expert_biases and moe.layout.interleaved
    assert (moe.activation, moe.swiglu_limit, moe.swiglu_alpha) == ("clamped_swiglu", 7.0, 1.702)
    assert (spec.features.sliding_window.window, spec.features.sliding_window.pattern) == (128, 2)
    assert (rope.type, rope.factor, rope.truncate) == ("yarn", 32.0, False)
    assert spec.features.padding.pad_token_id == 199999
    # The debug flavor clamps where random weights reach it.
    assert spec.debug_dims()["swiglu_limit"] < 1.0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"swiglu_limit": 0}, "swiglu_limit"),
        ({"swiglu_limit": "7"}, "swiglu_limit"),
        ({"swiglu_alpha": -1.0}, "swiglu_alpha"),
        ({"layer_types": ["full_attention", "sliding_attention"] * 12}, "layer_types"),
        ({"num_experts_per_tok": 33}, "num_experts_per_tok"),
        ({"rope_scaling": {**YARN, "beta_slow": 64.0}}, "rope_scaling.beta_fast"),
    ],
)
def test_bad_gpt_oss_fields_name_the_field(changes: dict, field: str) -> None:
    _assert_names_field(family_config("gpt_oss", **changes), field)
