"""Every dense family's generated package (or a sibling's with the same TP plan and checkpoint
layout, see FAMILIES) continues training from a ``save_pretrained`` folder under 2-rank FSDP and
under 2-rank tensor parallelism.

The test renders the package from a hub-shaped config (tests/configs/) and writes its debug
flavor with transformers' own class and ``save_pretrained`` (random weights, several shards);
then one torchrun job runs the runtime's own driver, which imports that folder
(``initial_load_in_hf``) and trains twice in one process group, FSDP (dp_shard 2) and TP (tp 2),
and both loss curves must agree. An adapter that does not read the checkpoint's names or shapes
stops the import; a TP plan that shards a module wrongly (a q/k norm, a bias, a sequence-sized
mask) changes the loss.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_helpers import assert_same_losses, run_driver, write_hf_folder

from tests.helpers import family_config, render_config_package

# family -> (tests/configs/<name>.json, changes): the variant with the most features to shard.
# Left to a sibling (one 2-rank job per code path): gemma, whose TP plan, (1 + w) norms, scaled
# embeddings, GeGLU, padding_idx and tied output are gemma2's minus the post-norms; mistral, whose
# TP plan, checkpoint layout (untied, llama names) and sliding-window mask are qwen2's minus the
# q/k/v biases. Their one-device differences run in test_generated_packages.py.
FAMILIES: dict[str, tuple[str, dict]] = {
    # (1 + w) norms, scaled embeddings, GeGLU, padding_idx, tied (as gemma); post-norms
    # (sequence-parallel), soft-capped attention, every 2nd layer sliding.
    "gemma2": ("gemma2", {}),
    # Per-head q/k norms on sharded heads, local/global rope, sliding pattern.
    "gemma3_text": ("gemma3_text", {}),
    # Multipliers, attention_dropout (0 in the debug flavor), padding_idx; tied.
    "granite": ("granite", {}),
    # Post-norms, q/k norms over whole (TP-sharded) projections, GQA, padding_idx; tied.
    "olmo2": (
        "olmo2",
        {"num_key_value_heads": 8, "tie_word_embeddings": True},
    ),
    # Parallel residual, partial rotary, biases; fused q/k/v only in the checkpoint.
    "gpt_neox": ("gpt_neox", {}),
    # Learned positions (sequence-sharded under TP), no rope, Conv1D checkpoint; tied.
    "gpt2": ("gpt2", {}),
    # LayerNorm and bias everywhere (replicated norm biases, sharded linear biases), plain MLP.
    "starcoder2": ("starcoder2", {}),
    # Fused checkpoint tensors, LongRoPE, partial rotary, padding_idx; tied.
    "phi3": ("phi4_mini", {}),
    # Per-head q/k norms on sharded heads, q/k/v/o biases, sliding top layers; tied.
    "qwen3": (
        "qwen3",
        {
            "attention_bias": True,
            "use_sliding_window": True,
            "sliding_window": 4096,
            "max_window_layers": 21,
        },
    ),
    # q/k/v biases without an o_proj bias, sliding top layers (mistral slides them all); untied.
    "qwen2": (
        "qwen2",
        {
            "tie_word_embeddings": False,
            "use_sliding_window": True,
            "sliding_window": 4096,
            "max_window_layers": 21,
        },
    ),
}
STEPS = 4


def family_argv(package: Path, dump_folder: Path, *extra: str) -> list[str]:
    """4 steps of the debug flavor, global batch 4, 64 tokens, the fused output loss; kv heads
    even for TP 2."""
    return [
        "--job.config_file",
        str(package / "train_configs" / "debug_model.toml"),
        "--job.dump_folder",
        str(dump_folder),
        "--training.steps",
        str(STEPS),
        "--training.global_batch_size",
        "4",
        "--training.seq_len",
        "64",
        # The output projection inside the loss ("auto" leaves it out at these sizes): each
        # family's output_transform (softcap, scaling) and tied weights go through it.
        "--training.fused_output_loss",
        "on",
        *extra,
    ]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hf_folder_trains_alike_under_fsdp_and_tp(family: str, tmp_path: Path) -> None:
    config_name, changes = FAMILIES[family]
    generated = render_config_package(tmp_path, family, family_config(config_name, **changes))
    package = tmp_path / family
    debug = generated.spec.debug_dims()
    even_kv = [] if debug["n_kv_heads"] % 2 == 0 else ["--model.args_overrides", "n_kv_heads=2"]
    hf_folder = write_hf_folder(package, tmp_path / "hf", **({"n_kv_heads": 2} if even_kv else {}))
    start = ["--checkpoint.initial_load_path", str(hf_folder), "--checkpoint.initial_load_in_hf"]
    runs = {
        "fsdp": family_argv(
            package, tmp_path / "fsdp", "--training.local_batch_size", "2", *even_kv, *start
        ),
        "tp": family_argv(
            package,
            tmp_path / "tp",
            "--training.local_batch_size",
            "4",
            "--parallelism.tensor_parallel_degree",
            "2",
            "--parallelism.data_parallel_shard_degree",
            "1",
            *even_kv,
            *start,
        ),
    }
    results = run_driver(tmp_path, 2, runs)
    fsdp = results["fsdp"]["losses"]
    assert sorted(fsdp) == list(range(1, STEPS + 1)) and all(loss > 0 for loss in fsdp.values())
    assert_same_losses(results["tp"]["losses"], fsdp)


# The mixture-of-experts families, each from its hub-shaped config as served.
MOE_FAMILIES = (
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "olmoe",
    "granitemoe",
    "deepseek_v2_lite",
    "deepseek_v3",
    "gpt_oss",
)


def test_moe_families_continue_training_from_hf_folders(tmp_path: Path) -> None:
    """Each mixture-of-experts family imports its ``save_pretrained`` folder (per-expert,
    fused or stacked expert tensors as the family's checkpoints hold them) on one rank and
    trains on; one torchrun job runs them all (their parallelisms are tested in
    test_runtime_moe.py and the generated packages' own checks)."""
    runs = {}
    for name in MOE_FAMILIES:
        package = tmp_path / name
        render_config_package(tmp_path, name, family_config(name))
        hf_folder = write_hf_folder(package, tmp_path / f"{name}_hf")
        runs[name] = family_argv(
            package,
            tmp_path / f"{name}_run",
            "--training.local_batch_size",
            "4",
            "--checkpoint.initial_load_path",
            str(hf_folder),
            "--checkpoint.initial_load_in_hf",
        )
    results = run_driver(tmp_path, 1, runs)
    for name in MOE_FAMILIES:
        losses = results[name]["losses"]
        assert sorted(losses) == list(range(1, STEPS + 1)), name
        assert all(0 < loss < 20 for loss in losses.values()), (name, losses)
