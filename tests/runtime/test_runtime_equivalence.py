"""Same loss curve whatever the parallelism: TinyLlama debug flavor, 8 steps, global batch 8.

One torchrun job per world size runs several configurations in one process group. The 2-rank
job is two torchrun agents (simulated nodes) meeting through c10d rendezvous on 127.0.0.1.
"""

from __future__ import annotations

import subprocess

import torch
import torch.distributed as dist
from runtime_helpers import (
    DRIVER,
    again_after_gloo_abort,
    assert_same_hf_tensors,
    assert_same_losses,
    child_env,
    debug_argv,
    hf_import_argv,
    read_result,
    run_driver,
    torchrun_args,
    write_plan,
)
from safetensors.torch import load_file

from bench.stats import failure_text
from runtime.hf_io import load_hf_state_dict


def test_activation_checkpointing_compile_and_the_unfused_loss_leave_the_loss_unchanged(tmp_path):
    """The base run applies the output projection inside its loss (``debug_argv`` turns it
    on); the ``unfused_loss`` run computes full logits and then the loss."""
    runs = {
        "base": debug_argv(tmp_path / "base"),
        "ac_full": debug_argv(tmp_path / "ac_full", "--activation_checkpoint.mode", "full"),
        "ac_op": debug_argv(
            tmp_path / "ac_op",
            "--activation_checkpoint.mode",
            "selective",
            "--activation_checkpoint.selective_ac_option",
            "op",
        ),
        "compile": debug_argv(tmp_path / "compile", "--compile.enable"),
        "unfused_loss": debug_argv(tmp_path / "unfused", "--training.fused_output_loss", "off"),
    }
    results = run_driver(tmp_path, 1, runs)
    base = results["base"]["losses"]
    assert len(base) == 8 and all(loss > 0 for loss in base.values())
    for name in ("ac_full", "ac_op", "compile", "unfused_loss"):
        assert_same_losses(results[name]["losses"], base)


def _run_two_nodes(tmp_path, runs: dict[str, list[str]]) -> dict:
    plan, result = write_plan(tmp_path, runs)
    failed = _two_agents(plan, result)
    if failed and again_after_gloo_abort(failed, runs, result):
        failed = _two_agents(plan, result)
    assert not failed, "\n".join(failed)
    return read_result(result)


def _two_agents(plan, result) -> list[str]:
    """Run the plan's two torchrun agents; the output of each that failed."""
    # The test hosts the rendezvous store on a port it holds from the start; both agents join it.
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    endpoint = f"127.0.0.1:{store.port}"
    agents = [
        subprocess.Popen(
            [*torchrun_args(1, nnodes=2, endpoint=endpoint), str(DRIVER), str(plan), str(result)],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [agent.communicate(timeout=300)[0] for agent in agents]
    return [
        f"--- agent {index} (exit {agent.returncode}) ---\n{failure_text(output, 4000)}"
        for index, (agent, output) in enumerate(zip(agents, outputs, strict=True))
        if agent.returncode != 0
    ]


NO_FSDP = ("--parallelism.data_parallel_shard_degree", "1")
TP2 = ("--parallelism.tensor_parallel_degree", "2", *NO_FSDP)
PP2 = ("--parallelism.pipeline_parallel_degree", "2", *NO_FSDP)


def _sharded_imports(tmp_path, hf_source, parallelisms: dict[str, tuple[str, ...]]) -> dict:
    """Runs that import ``hf_source`` under each parallelism and export it again unchanged."""
    return {
        name: debug_argv(tmp_path / name, *extra, *hf_import_argv(hf_source))
        for name, extra in parallelisms.items()
    }


def test_two_nodes_fsdp_tp_pp_gpipe_match_one_rank(tmp_path, baseline_losses, hf_source):
    """Also: sharded HF import under FSDP 2, TP 2 and PP 2 reads the checkpoint bit for bit, and
    the sharded export writes it back so (one file per rank, an index)."""
    imports = {"import_fsdp": (), "import_tp": TP2, "import_pp": PP2}
    runs = {
        "fsdp": debug_argv(tmp_path / "fsdp", "--checkpoint.last_save_in_hf"),
        "tp": debug_argv(
            tmp_path / "tp",
            "--parallelism.tensor_parallel_degree",
            "2",
            "--parallelism.data_parallel_shard_degree",
            "1",
        ),
        "pp": debug_argv(
            tmp_path / "pp",
            "--parallelism.pipeline_parallel_degree",
            "2",
            "--parallelism.data_parallel_shard_degree",
            "1",
            "--checkpoint.last_save_in_hf",
        ),
        "gpipe": debug_argv(
            tmp_path / "gpipe",
            "--parallelism.pipeline_parallel_degree",
            "2",
            "--parallelism.data_parallel_shard_degree",
            "1",
            "--parallelism.pipeline_parallel_schedule",
            "GPipe",
        ),
    }
    losses = list(runs)
    runs.update(_sharded_imports(tmp_path, hf_source, imports))
    results = _run_two_nodes(tmp_path, runs)
    for name in losses:
        assert_same_losses(results[name]["losses"], baseline_losses)
    for name in imports:
        assert_same_hf_tensors(tmp_path / name / "hf", hf_source)
    # The pipeline export is two shards (one a stage) plus an index; its tensors equal FSDP's.
    pp_files = sorted((tmp_path / "pp" / "hf").glob("*.safetensors"))
    assert [f.name for f in pp_files] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert (tmp_path / "pp" / "hf" / "model.safetensors.index.json").is_file()
    pp_state = {k: v for f in pp_files for k, v in load_file(str(f)).items()}
    fsdp_state = load_hf_state_dict(tmp_path / "fsdp" / "hf")
    assert sorted(pp_state) == sorted(fsdp_state)
    for key, value in fsdp_state.items():
        # Adam normalizes tiny gradients, so reduction-order noise shows up to ~1e-5 here.
        torch.testing.assert_close(pp_state[key], value, rtol=1e-3, atol=1e-4)


def test_four_ranks_hsdp_fsdp_tp_and_pp_fsdp_match_one_rank(tmp_path, baseline_losses, hf_source):
    """Also: sharded HF import under FSDP 4, FSDP 2 x TP 2 and PP 2 x FSDP 2 reads the checkpoint
    bit for bit; the export loads in transformers with the source's logits."""
    imports = {
        "import_fsdp4": (),
        "import_fsdp_tp": ("--parallelism.tensor_parallel_degree", "2"),
        "import_pp_fsdp": ("--parallelism.pipeline_parallel_degree", "2"),
    }
    runs = {
        "hsdp": debug_argv(
            tmp_path / "hsdp",
            "--parallelism.data_parallel_replicate_degree",
            "2",
            "--parallelism.data_parallel_shard_degree",
            "2",
        ),
        "fsdp_tp": debug_argv(tmp_path / "fsdp_tp", "--parallelism.tensor_parallel_degree", "2"),
        "interleaved_pp_fsdp": debug_argv(
            tmp_path / "pp_fsdp",
            "--parallelism.pipeline_parallel_degree",
            "2",
            "--parallelism.pipeline_parallel_schedule",
            "Interleaved1F1B",
        ),
    }
    losses = list(runs)
    runs.update(_sharded_imports(tmp_path, hf_source, imports))
    results = run_driver(tmp_path, 4, runs)
    for name in losses:
        assert_same_losses(results[name]["losses"], baseline_losses)
    for name in imports:
        assert_same_hf_tensors(tmp_path / name / "hf", hf_source)
    from transformers import AutoModelForCausalLM

    exported = tmp_path / "import_fsdp_tp" / "hf"
    assert len(list(exported.glob("model-*-of-00004.safetensors"))) == 4
    tokens = torch.randint(0, 2048, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = [
            AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()(tokens).logits
            for folder in (exported, hf_source)
        ]
    assert torch.equal(*logits)
