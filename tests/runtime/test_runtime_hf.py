"""HF round trip: export -> transformers ``from_pretrained`` gives the trained model's logits;
import -> training continues from exactly those weights."""

from __future__ import annotations

import pytest
import torch
import torch.distributed.checkpoint as dcp
from runtime_helpers import (
    DEBUG_TOML,
    PACKAGE_DIR,
    read_metrics,
    run_trainer,
    transformers_first_loss,
)

from runtime.config import JobConfig
from runtime.package import resolve_train_spec

COMMON = ["--job.config_file", str(DEBUG_TOML), "--training.seq_len", "32"]


def _train(*argv: str) -> str:
    completed = run_trainer(*COMMON, *argv)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


def _losses(dump) -> dict[int, float]:
    return {record["step"]: record["loss"] for record in read_metrics(dump)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 2-step debug run with an async DCP checkpoint and an HF export of its final weights."""
    dump = tmp_path_factory.mktemp("export")
    _train(
        "--job.dump_folder",
        str(dump),
        "--training.steps",
        "2",
        "--checkpoint.enable",
        "--checkpoint.interval",
        "2",
        "--checkpoint.async_mode",
        "async",
        "--checkpoint.last_save_in_hf",
    )
    return dump


def _trained_model(dump):
    config = JobConfig.from_dict({"model": {"package_dir": str(PACKAGE_DIR)}})
    spec, _ = resolve_train_spec(config)
    model = spec.model_cls(spec.model_args["debugmodel"])
    model.init_weights()
    state = model.state_dict()
    dcp.load({"model": state}, checkpoint_id=str(dump / "checkpoint" / "step-2"))
    model.load_state_dict(state)
    return model.eval()


def test_export_loads_in_transformers_with_identical_logits(exported):
    from transformers import AutoModelForCausalLM

    hf_model = AutoModelForCausalLM.from_pretrained(exported / "hf", dtype=torch.float32).eval()
    model = _trained_model(exported)
    tokens = torch.randint(0, 2048, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf_model(tokens).logits, model(tokens), rtol=1e-5, atol=1e-5)


def test_import_continues_training_from_the_hf_weights(exported, tmp_path):
    from transformers import AutoModelForCausalLM

    dump = tmp_path / "continued"
    output = _train(
        "--job.dump_folder",
        str(dump),
        "--training.steps",
        "2",
        "--training.local_batch_size",
        "8",
        "--training.global_batch_size",
        "8",
        "--checkpoint.initial_load_path",
        str(exported / "hf"),
        "--checkpoint.initial_load_in_hf",
    )
    assert "loaded HF weights" in output
    hf_model = AutoModelForCausalLM.from_pretrained(exported / "hf", dtype=torch.float32)
    argv = [*COMMON, "--training.local_batch_size", "8"]
    expected = transformers_first_loss(hf_model, argv, vocab_size=2048)
    losses = _losses(dump)
    assert losses[1] == pytest.approx(expected, rel=1e-5)
    assert sorted(losses) == [1, 2] and losses[2] == losses[2]  # step 2 trained, loss not NaN
