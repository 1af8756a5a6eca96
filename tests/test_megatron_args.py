"""Every key a package's Megatron YAML sets is an argument Megatron-LM has, of the right type.

``scaffolder/data/megatron_args.json`` holds the argparse destinations of Megatron-LM at the
commit Primus pins (facts extracted from its megatron/training/arguments.py; the header names
the commits). Primus keeps only such destinations: a flag name (``norm_epsilon``) or a key no
argument has is silently dropped, so a package must never emit one.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaffolder.generate import generate
from tests.helpers import FAMILY_CONFIGS

TABLE = json.loads(resources.files("scaffolder").joinpath("data/megatron_args.json").read_text())
ARGUMENTS: dict[str, dict[str, Any]] = TABLE["arguments"]
# Primus's own experiment and preset structure, not Megatron arguments.
PRIMUS_KEYS = {"extends"}
SOURCES = ["TinyLlama/TinyLlama-1.1B-Chat-v1.0"] + sorted(
    str(path) for path in FAMILY_CONFIGS.glob("*.json")
)
TYPES = {
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "str": (str,),
    "list": (list,),
    "int|list": (int, list, str),  # window_attn_skip_freq: a number or a Python list expression
}


def test_table_names_its_source() -> None:
    assert TABLE["source"] == "NVIDIA/Megatron-LM"
    assert len(TABLE["commit"]) == 40 and "AMD-AGI/Primus" in TABLE["pinned_by"]
    # The two flag names Primus drops are not destinations.
    assert "norm_epsilon" not in ARGUMENTS and "apply_layernorm_1p" not in ARGUMENTS
    assert ARGUMENTS["layernorm_epsilon"]["flag"] == "--norm-epsilon"


def _megatron_settings(files: dict[str, str], package: str) -> dict[str, dict[str, Any]]:
    """Each Megatron YAML of a rendered package: its settings (the experiment: its overrides)."""
    settings = {}
    for relpath, text in files.items():
        if not relpath.startswith("megatron/") or not relpath.endswith(".yaml"):
            continue
        data = yaml.safe_load(text) or {}
        if relpath == "megatron/exp_pretrain.yaml":
            data = data["modules"]["pre_trainer"]["overrides"]
        settings[relpath] = {k: v for k, v in data.items() if k not in PRIMUS_KEYS}
    assert f"megatron/models/{package}.yaml" in settings
    return settings


def _wrong_type(kind: str, value: Any) -> bool:
    if value is None:
        return False
    expected = TYPES[kind]
    return not isinstance(value, expected) or (bool not in expected and isinstance(value, bool))


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: Path(s).stem)
def test_every_emitted_key_is_a_megatron_argument(source: str) -> None:
    generated = generate(source, name="pkg")
    problems = []
    for relpath, data in _megatron_settings(generated.files, "pkg").items():
        for key, value in data.items():
            if key not in ARGUMENTS:
                problems.append(f"{relpath}: {key} is not a Megatron-LM argument")
            elif _wrong_type(ARGUMENTS[key]["type"], value):
                problems.append(f"{relpath}: {key} {value!r} is not {ARGUMENTS[key]['type']}")
    # A rotary base with a fraction (StarCoder2's) stays a float: Primus passes YAML values
    # through without argparse's int(), and the YAML says so in a comment.
    problems = [p for p in problems if not p.endswith("is not int") or "rotary_base" not in p]
    assert problems == []


def test_primus_preset_table_keys_are_megatron_arguments() -> None:
    presets = json.loads(
        resources.files("scaffolder").joinpath("data/primus_model_presets.json").read_text()
    )
    assert presets["commit"] == TABLE["pinned_by"].split()[1]
    for preset in presets["presets"].values():
        assert set(preset) <= set(ARGUMENTS)
        assert set(presets["match_keys"]) <= set(preset)


@pytest.mark.parametrize(
    ("config", "preset", "differences"),
    [
        (
            "mixtral.json",
            "mixtral_8x7B_v0.1.yaml",
            ["max_position_embeddings 4096 (here 32768)", "moe_aux_loss_coeff 0.01 (here 0.02)"],
        ),
        ("qwen3_moe.json", "qwen3_30B_A3B.yaml", ["moe_aux_loss_coeff 0.0 (here 0.001)"]),
        # Primus's gpt-oss preset extends its DeepSeek-V2 base: q/k norms, no biases, SwiGLU,
        # softmax-first routing with a sequence-level loss, rope base 10000.
        (
            "gpt_oss.json",
            "gpt_oss_20B.yaml",
            [
                "qk_layernorm True (here False)",
                "add_bias_linear False (here True)",
                "quick_geglu False (here True)",
                "rotary_base 10000 (here 150000)",
                "moe_router_pre_softmax True (here False)",
                "moe_aux_loss_coeff 0.001 (here 0.9)",
            ],
        ),
        ("qwen2_moe.json", None, []),
        # transformers computes no load-balancing loss for DeepSeek; Primus trains with
        # DeepSeek's sequence-wise one. Every architecture value agrees.
        (
            "deepseek_v3.json",
            "deepseek_v3.yaml",
            ["moe_router_load_balancing_type 'seq_aux_loss' (here 'none')"],
        ),
        (
            "deepseek_v2_lite.json",
            "deepseek_v2_lite.yaml",
            ["moe_router_load_balancing_type 'seq_aux_loss' (here 'none')"],
        ),
    ],
)
def test_primus_presets_of_the_same_model_are_compared(
    config: str, preset: str | None, differences: list[str]
) -> None:
    """Where Primus ships a preset for the model, the package's YAML says how it differs."""
    files = generate(str(FAMILY_CONFIGS / config), name="pkg").files
    text = " ".join(
        line.lstrip("# ").strip() for line in files["megatron/models/pkg.yaml"].splitlines()
    )
    if preset is None:
        assert "Primus ships its own preset" not in text
        return
    assert f"Primus ships its own preset for this model, {preset}" in text
    for difference in differences:
        assert difference in text
