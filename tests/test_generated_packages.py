"""Render llama variants that cover every feature switch, then run their own generated tests.

All variants run in one pytest subprocess (one torch/transformers import) from the folder that
holds them, exactly as a user runs ``pytest <package>``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from scaffolder.families import build_spec
from scaffolder.render import ruff_args
from tests.helpers import family_config, render_config_package, tinyllama_config
from tests.test_package_hygiene import assert_package_is_clean

VARIANTS = {
    # TinyLlama as served: GQA 32/4, default rope, untied, no biases.
    "tinyllama": {},
    # Tied embeddings, q/k/v/o and MLP biases, llama3 rope scaling, explicit head_dim
    # != hidden/heads.
    "llama_tied_bias_llama3": {
        "tie_word_embeddings": True,
        "attention_bias": True,
        "mlp_bias": True,
        "head_dim": 96,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
    # Multi-head attention (no GQA), linear rope scaling, new-style rope_parameters.
    "llama_mha_linear": {
        "num_key_value_heads": 32,
        "rope_theta": None,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
        "max_position_embeddings": 4096,
    },
    # Dynamic NTK rope: the generated tests also run past max_position_embeddings.
    "llama_dynamic": {"rope_scaling": {"type": "dynamic", "factor": 2.0}},
}


def render_variants(root: Path, configs: dict[str, dict]) -> list[str]:
    """Render each ``{name: config}`` into ``root/<name>``; returns the names."""
    for name, config in configs.items():
        render_config_package(root, name, config)
    return list(configs)


def assert_ruff_clean(root: Path, names: Iterable[str]) -> None:
    """``ruff check`` and ``ruff format --check`` pass on each package under ``root``."""
    ruff = Path(sys.executable).with_name("ruff")
    for name in names:
        for command in (
            [str(ruff), "check", "--select", "E,F,W,I,B,UP", *ruff_args(name), name],
            [str(ruff), "format", "--check", *ruff_args(name), name],
        ):
            result = subprocess.run(command, cwd=root, capture_output=True, text=True)
            assert result.returncode == 0, result.stdout + result.stderr


def run_generated_tests(root: Path, names: Iterable[str], deselect: Iterable[str] = ()) -> None:
    """The packages' own generated tests pass, in one pytest subprocess run from ``root``."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *names]
    command += [f"--deselect={node}" for node in deselect]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("packages")
    render_variants(root, {name: tinyllama_config(**changes) for name, changes in VARIANTS.items()})
    return root


def test_generated_code_is_ruff_clean(rendered: Path) -> None:
    assert_ruff_clean(rendered, VARIANTS)


def test_only_the_features_a_config_uses_are_generated(rendered: Path) -> None:
    for name, changes in VARIANTS.items():
        spec = build_spec(tinyllama_config(**changes))
        assert_package_is_clean(rendered / name, spec.family, spec.rope.type)
    plain = (rendered / "tinyllama" / "model" / "model.py").read_text()
    assert "tie_word_embeddings" not in plain and "bias=True" not in plain
    assert "llama3" not in plain.split('"""', 2)[2] and "rope_factor" not in plain
    tied = (rendered / "llama_tied_bias_llama3" / "model" / "model.py").read_text()
    assert "self.output.weight = self.tok_embeddings.weight" in tied
    assert "bias=True" in tied and "low_freq_wavelen" in tied
    mha = (rendered / "llama_mha_linear" / "model" / "model.py").read_text()
    assert "enable_gqa" not in mha and "rope_factor" in mha


def test_generated_tests_pass(rendered: Path) -> None:
    single_device = [name for name in VARIANTS if name in SINGLE_DEVICE_VARIANTS]
    run_generated_tests(
        rendered, VARIANTS, deselect=[f"{name}/tests/test_distributed.py" for name in single_device]
    )


# ---------------------------------------------------------------- other families
# Hub-shaped config.json files from tests/configs/, with changes applied (None deletes a key).
# Each group renders its variants and runs their generated tests in its own pytest subprocess,
# so `pytest -n 2` runs the groups in parallel.
FAMILY_GROUPS: dict[str, dict[str, tuple[str, dict]]] = {
    "mistral_qwen2": {
        # Mistral 7B v0.1: sliding_window 4096 on every layer (the debug flavor: 16 tokens).
        "mistral": ("mistral", {}),
        # Mistral NeMo: no sliding window, head_dim 128 != 5120 / 32; tied here.
        "mistral_nemo_tied": ("mistral_nemo", {"tie_word_embeddings": True}),
        # Qwen2.5 0.5B as served: tied, q/k/v biases, use_sliding_window false.
        "qwen2_tied": ("qwen2", {}),
        # Untied, sliding windows on layers 21-23 of 24 (debug: layer 3 of 4), new-style rope.
        "qwen2_sliding": (
            "qwen2",
            {
                "tie_word_embeddings": False,
                "use_sliding_window": True,
                "sliding_window": 4096,
                "max_window_layers": 21,
                "rope_theta": None,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
            },
        ),
        # Qwen2.5's published long-context setting: YaRN, factor 4 over 32768 positions (beta
        # and attention factor left to transformers' defaults, ramp bounds rounded).
        "qwen2_yarn": (
            "qwen2",
            {
                "rope_scaling": {
                    "type": "yarn",
                    "factor": 4.0,
                    "original_max_position_embeddings": 32768,
                }
            },
        ),
    },
    "qwen3_phi3": {
        # Qwen3 0.6B as served: per-head q/k norms, head_dim 128 != 1024 / 16, tied.
        "qwen3": ("qwen3", {}),
        # Untied, q/k/v/o biases, new-style fields: rope_parameters (linear) and layer_types
        # sliding the top 4 of 28 layers.
        "qwen3_sliding": (
            "qwen3",
            {
                "tie_word_embeddings": False,
                "attention_bias": True,
                "use_sliding_window": True,
                "sliding_window": 8192,
                "max_window_layers": None,
                "rope_theta": None,
                "rope_scaling": None,
                "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
                "layer_types": ["full_attention"] * 24 + ["sliding_attention"] * 4,
            },
        ),
        # Phi-3.5 mini as served: fused checkpoint tensors, LongRoPE (debug: factors switch at
        # 32 tokens), sliding_window, pad_token_id 32000, MHA, untied.
        "phi3": ("phi3", {}),
        # Phi-4 mini: partial_rotary_factor 0.75, GQA 24/8, tied.
        "phi4_mini": ("phi4_mini", {}),
    },
    "moe": {
        # Mixtral 8x7B as served: experts in every layer, top-2, renormalized, per-expert w1/w3/w2.
        "mixtral": ("mixtral", {}),
        # Qwen3-30B-A3B as served: 128 experts top-8 (debug: 8, top-4), norm_topk_prob, per-head
        # q/k norms, head_dim 128 != 2048 / 32.
        "qwen3_moe": ("qwen3_moe", {}),
        # Qwen1.5-MoE with dense layers: mlp_only_layers and decoder_sparse_step 2 (debug: layers
        # 1 and 3 sparse), a gated shared expert, q/k/v biases, no renormalization.
        "qwen2_moe_dense_layers": (
            "qwen2_moe",
            {"decoder_sparse_step": 2, "mlp_only_layers": [0]},
        ),
        # OLMoE 1B-7B as served: q/k norms over whole projections, pad_token_id 1.
        "olmoe": ("olmoe", {}),
        # Granite 3.0 1B-A400M as served: multipliers, fused expert tensors, top-k logits then
        # softmax, tied, attention_dropout 0.1.
        "granitemoe": ("granitemoe", {}),
    },
    "deepseek": {
        # DeepSeek-V3 as served: YaRN (factor 40, mscale_all_dim 1: scores scale by mscale ** 2),
        # q_lora_rank 1536, 8 groups of experts (debug: 4 groups, 2 chosen),
        # first_k_dense_replace 3 (debug: 1), sigmoid scores with e_score_correction_bias,
        # routed_scaling_factor 2.5, FP8 quantization_config.
        "deepseek_v3": ("deepseek_v3", {}),
        # Moonlight-16B-A3B (DeepSeek-V3 architecture): one q_proj (q_lora_rank null), one group;
        # RoPE on the two halves (rope_interleave false) here.
        "moonlight_halves": ("moonlight", {"rope_interleave": False}),
        # DeepSeek-V2-Lite as served: YaRN with mscale 0.707, one q_proj, greedy softmax routing
        # of 64 experts, 2 shared experts, first_k_dense_replace 1.
        "deepseek_v2_lite": ("deepseek_v2_lite", {}),
        # DeepSeek-V2's routing and queries: group_limited_greedy over 8 groups (debug: 4, 2
        # chosen), q_lora_rank 1536, routed_scaling_factor 16.
        "deepseek_v2_grouped": (
            "deepseek_v2_lite",
            {
                "topk_method": "group_limited_greedy",
                "n_group": 8,
                "topk_group": 3,
                "q_lora_rank": 1536,
                "routed_scaling_factor": 16.0,
            },
        ),
    },
    "gpt_oss": {
        # gpt-oss-20b as served: attention sinks, q/k/v/o biases, sliding and full layers
        # alternating, biased router and experts with the clamped SwiGLU (debug: clamped at
        # 0.25, so random weights reach the clamp), YaRN with unrounded ramp bounds.
        "gpt_oss": ("gpt_oss", {}),
    },
    "olmo2_granite": {
        # OLMo 2 7B as served: post-norm blocks, q/k norms over whole projections, MHA,
        # pad_token_id 100277, untied.
        "olmo2": ("olmo2", {}),
        # GQA 16/4 (k_norm over fewer features than q_norm), head_dim 96 != 2048 / 16, tied,
        # pad_token_id left to Olmo2Config's default (1).
        "olmo2_gqa_tied": (
            "olmo2",
            {
                "hidden_size": 2048,
                "num_hidden_layers": 16,
                "num_attention_heads": 16,
                "num_key_value_heads": 4,
                "intermediate_size": 8192,
                "head_dim": 96,
                "tie_word_embeddings": True,
                "pad_token_id": None,
            },
        ),
        # Granite 3.0 2B as served: the four multipliers, attention_dropout 0.1, pad 0, tied.
        "granite": ("granite", {}),
        # Untied, q/k/v/o and MLP biases, llama3 rope (new style), no dropout or pad token.
        "granite_biased": (
            "granite",
            {
                "tie_word_embeddings": False,
                "attention_bias": True,
                "mlp_bias": True,
                "attention_dropout": 0.0,
                "pad_token_id": None,
                "max_position_embeddings": 131072,
                "rope_theta": None,
                "rope_scaling": None,
                "rope_parameters": {
                    "rope_type": "llama3",
                    "rope_theta": 10000000.0,
                    "factor": 4.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 4096,
                },
            },
        ),
    },
    "gemma": {
        # Gemma 7B: MHA 16 heads of head_dim 256 != 3072 / 16, legacy hidden_act "gelu", pad 0.
        "gemma": ("gemma", {}),
        # Gemma 2 9B: sandwich norms, soft-capped attention and logits, every 2nd layer global.
        "gemma2": ("gemma2", {}),
    },
    "starcoder2": {
        # StarCoder2 3B: LayerNorm, tanh-GELU c_fc/c_proj MLP, biases everywhere, GQA 24/2,
        # sliding_window 4096, tied, dropouts 0.1 (not applied).
        "starcoder2": ("starcoder2", {}),
        # No biases, exact GELU, no sliding window, untied.
        "starcoder2_plain": (
            "starcoder2",
            {
                "use_bias": False,
                "hidden_act": "gelu",
                "sliding_window": None,
                "tie_word_embeddings": False,
            },
        ),
    },
    "gpt_neox": {
        # Pythia-160M as served (old-style rotary_emb_base / rotary_pct): parallel residual,
        # RoPE on 25% of each head, exact GELU, biases, untied.
        "gpt_neox": ("gpt_neox", {}),
        # Sequential blocks, gelu_fast, no attention biases (the MLP keeps its own), tied,
        # linear rope scaling on half of each head.
        "gpt_neox_sequential": (
            "gpt_neox",
            {
                "use_parallel_residual": False,
                "hidden_act": "gelu_fast",
                "attention_bias": False,
                "tie_word_embeddings": True,
                "rotary_pct": 0.5,
                "rope_scaling": {"type": "linear", "factor": 2.0},
            },
        ),
    },
    "gpt2": {
        # GPT-2 124M as served: learned positions, gelu_new, Conv1D checkpoint with fused c_attn,
        # tied; resid/embd/attn_pdrop 0.1 (not applied).
        "gpt2": ("gpt2", {}),
        # Untied (so the generated 2-rank test runs the pipeline too, positions on stage 0),
        # unscaled scores, tanh GELU, n_inner != 4 * n_embd.
        "gpt2_untied": (
            "gpt2",
            {
                "tie_word_embeddings": False,
                "scale_attn_weights": False,
                "activation_function": "gelu_pytorch_tanh",
                "n_inner": 2048,
            },
        ),
    },
    "gemma3": {
        # Gemma 3 1B: MQA, per-head q/k norms, 5 sliding layers to 1 global, local/global RoPE.
        "gemma3_text": ("gemma3_text", {}),
        # New-style fields (rope_parameters per layer type, layer_types), linear global RoPE,
        # final logit soft-capping, untied.
        "gemma3_text_scaled": ("gemma3_text_scaled", {"tie_word_embeddings": False}),
    },
}
# What each family's model.py must and must not contain: only the code its config uses.
FAMILY_MODEL_CODE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mistral": (("sliding_window_mask(", "attn_mask=mask"), ("is_causal", "bias=True")),
    "mistral_nemo_tied": (
        ("self.output.weight = self.tok_embeddings.weight", "is_causal=True"),
        ("sliding", "bias=True"),
    ),
    "qwen2_tied": (
        ("bias=True", "wo = nn.Linear(q_dim, model_args.dim, bias=False)"),
        ("sliding",),
    ),
    "qwen2_sliding": (
        ("self.sliding_window = model_args.sliding_window if sliding else None", "is_causal=mask"),
        (),
    ),
    "qwen2_yarn": (
        ("math.floor(correction_dim(", "* args.rope_attention_factor", "interpolation"),
        ("sliding", "mscale"),
    ),
    "qwen3": (
        (
            "self.q_norm = nn.RMSNorm(model_args.head_dim",
            "self.output.weight = self.tok_embeddings",
        ),
        ("sliding", "bias=True"),
    ),
    "qwen3_sliding": (
        ("xq, xk = self.q_norm(xq), self.k_norm(xk)", "bias=True", "is_causal=mask"),
        (),
    ),
    "phi3": (
        ("longrope_cache(", "* args.rope_attention_factor", "padding_idx=", "attn_mask=mask"),
        ("q_pass", "bias=True", "self.output.weight = self.tok_embeddings.weight"),
    ),
    "phi4_mini": (
        ("q_pass", "args.rotary_dim", "self.output.weight = self.tok_embeddings.weight"),
        ("bias=True",),
    ),
    "olmo2": (
        ("self.q_norm(self.wq(x))", "h = x + self.post_attention_norm(", "padding_idx="),
        ("self.attention_norm =", "self.ffn_norm =", "enable_gqa"),
    ),
    "olmo2_gqa_tied": (("ProjectionRMSNorm(kv_dim", "enable_gqa", "padding_idx="), ()),
    "granite": (
        (
            "* self.model_args.embedding_multiplier",
            "* self.residual_multiplier",
            "scale=self.scale",
            "/ self.model_args.logits_scaling",
            "dropout_p=self.dropout if self.training else 0.0",
        ),
        ("bias=True",),
    ),
    "granite_biased": (("bias=True", "low_freq_wavelen"), ("dropout", "padding_idx")),
    "gemma": (
        ("1.0 + self.weight.float()", 'approximate="tanh"', "dim**0.5", "padding_idx="),
        ("sliding", "softcap", "q_norm", "post_attention_norm", "F.silu"),
    ),
    "gemma2": (
        ("torch.tanh(scores / self.softcap)", "final_logit_softcapping", "post_ffn_norm"),
        ("F.scaled_dot_product_attention", "q_norm", "local_rope"),
    ),
    "starcoder2": (
        ("nn.LayerNorm", 'approximate="tanh"', "sliding_window_mask(", "bias=True"),
        ("w3", "RMSNorm", "is_causal=True"),
    ),
    "starcoder2_plain": (
        ("F.gelu(self.w1(x))", "is_causal=True", "bias=False", "nn.init.normal_(self.output"),
        ("sliding", "bias=True", "approximate", "w3"),
    ),
    "gpt_neox": (
        ("feed_forward(self.ffn_norm(x)) + attention_out + x", "q_pass", "F.gelu(self.w1(x))"),
        ("w3", "RMSNorm", "rope_factor", "self.output.weight = self.tok_embeddings.weight"),
    ),
    "gpt_neox_sequential": (
        ("gelu_fast(self.w1(x))", "/ args.rope_factor", "self.output.weight = self.tok_embeddings"),
        ("attention_out + x", "approximate"),
    ),
    "gpt2": (
        ("self.pos_embeddings(positions)", "gelu_new(self.w1(x))", "is_causal=True)"),
        ("rope", "rotary", "w3", "RMSNorm", "scale="),
    ),
    "gpt2_untied": (
        ("scale=1.0", 'approximate="tanh"', "nn.init.normal_(self.output.weight"),
        ("rope", "gelu_new", "self.output.weight = self.tok_embeddings.weight"),
    ),
    "gemma3_text": (
        ("q_norm", "local_rope_cache", "scale=self.scale", "is_sliding_layer", "enable_gqa"),
        ("softcap", "rope_factor", "nn.RMSNorm"),
    ),
    "mixtral": (
        ("self.moe = MoE(model_args)", "load_balancing_loss("),
        ("class FeedForward", "shared_expert", "feed_forward"),
    ),
    "qwen3_moe": (
        ("self.q_norm = nn.RMSNorm(model_args.head_dim", "from .moe import MoE"),
        ("class FeedForward", "moe_enabled"),
    ),
    "qwen2_moe_dense_layers": (
        ("self.moe_enabled = model_args.is_moe_layer(layer_id)", "class FeedForward"),
        ("q_norm",),
    ),
    "olmoe": (
        ("self.q_norm(self.wq(x))", "padding_idx="),
        ("class FeedForward", "moe_enabled"),
    ),
    "granitemoe": (
        ("* self.residual_multiplier", "self.output.weight = self.tok_embeddings.weight"),
        ("class FeedForward",),
    ),
    "deepseek_v3": (
        ("self.wq_b(self.q_norm(self.wq_a(x)))", "xq[..., 0::2]", "first_k_dense_replace"),
        ("self.wq(x)", "rotate_half"),
    ),
    "moonlight_halves": (("self.wq(x)", "rotate_half"), ("wq_a", "0::2")),
    "deepseek_v2_lite": (("self.wq(x)", "xq[..., 0::2]"), ("wq_a", "rotate_half")),
    "deepseek_v2_grouped": (("self.wq_b(self.q_norm(self.wq_a(x)))",), ("self.wq(x)",)),
    "gpt_oss": (
        (
            "self.sinks = nn.Parameter(",
            "sink_column",
            "is_sliding_layer(",
            "bias=True",
            "* args.rope_attention_factor",
            "from .moe import MoE",
        ),
        ("F.scaled_dot_product_attention", "math.floor", "class FeedForward", "shared_expert"),
    ),
    "gemma3_text_scaled": (
        ("/ args.rope_factor", "final_logit_softcapping", "nn.init.normal_(self.output.weight"),
        ("attn_logit_softcapping", "self.output.weight = self.tok_embeddings.weight"),
    ),
}


# Variants whose generated 2-rank test (tests/test_distributed.py, the costliest) is left to a
# sibling variant: what sets them apart runs on one device (Mistral's TP plan is qwen2_sliding's
# without biases). tests/runtime/test_runtime_families.py trains each dense TP plan under FSDP and
# TP from a save_pretrained folder.
SINGLE_DEVICE_VARIANTS = {
    # TinyLlama's infra/ (TP plan, pipeline split) to the byte but for a docstring's head counts.
    # llama_dynamic's 2-rank test runs TinyLlama's with a max_position_embeddings the check's 32
    # tokens run past (dynamic NTK recomputed in attention under TP); the rope type of
    # llama_mha_linear only changes the replicated rope cache. Heads without GQA under TP run in
    # gpt_neox's and gpt2_untied's 2-rank tests, linear rope under TP and PP in qwen3_sliding's.
    "tinyllama",
    "llama_mha_linear",
    "mistral",
    "mistral_nemo_tied",
    "qwen2_tied",
    "qwen2_yarn",
    "qwen3",
    "phi3",
    "olmo2",
    "granite_biased",
    # Tied siblings of untied variants whose 2-rank test also runs the pipeline; the TP plans
    # differ only in what one device checks (gemma2 covers gemma's plan plus post-norms).
    "gemma",
    "gemma3_text",
    "starcoder2",
    "gpt_neox_sequential",
    "gpt2",
    # The 2-rank tests of qwen3_moe (experts in every layer) and qwen2_moe_dense_layers (both
    # kinds of blocks) cover the other mixtures' TP plans and pipelines.
    "mixtral",
    "olmoe",
    "granitemoe",
    # deepseek_v3's 2-rank test covers latent attention's plan (the attention replicated over
    # the TP ranks) and the dense-then-sparse blocks; its siblings differ on one device only.
    "moonlight_halves",
    "deepseek_v2_lite",
    "deepseek_v2_grouped",
}


def render_group(group: str, root: Path) -> list[str]:
    configs = {
        name: family_config(config_name, **changes)
        for name, (config_name, changes) in FAMILY_GROUPS[group].items()
    }
    return render_variants(root, configs)


@pytest.mark.parametrize("group", sorted(FAMILY_GROUPS))
def test_family_packages(group: str, tmp_path: Path) -> None:
    """Ruff-clean, only the code each config uses, and their own generated tests pass."""
    names = render_group(group, tmp_path)
    for name, (config_name, changes) in FAMILY_GROUPS[group].items():
        spec = build_spec(family_config(config_name, **changes))
        assert_package_is_clean(tmp_path / name, spec.family, spec.rope and spec.rope.type)
    for name in names:
        model = (tmp_path / name / "model" / "model.py").read_text()
        present, absent = FAMILY_MODEL_CODE[name]
        assert [code for code in present if code not in model] == [], name
        assert [code for code in absent if code in model] == [], name
    assert_ruff_clean(tmp_path, names)
    single_device = [name for name in names if name in SINGLE_DEVICE_VARIANTS]
    run_generated_tests(
        tmp_path, names, deselect=[f"{name}/tests/test_distributed.py" for name in single_device]
    )
