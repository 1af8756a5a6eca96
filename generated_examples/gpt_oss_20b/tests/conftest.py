"""Fixtures shared by this package's tests. Everything runs offline, in fp32, on CPU.

Full-size tests are opt-in: ``SCAFFOLD_FULL_SIZE=1 pytest gpt_oss_20b``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import GptOssConfig, GptOssForCausalLM, PreTrainedModel
from transformers.core_model_loading import revert_weight_conversion

from gpt_oss_20b import gpt_oss_20b_configs
from gpt_oss_20b.model.args import ModelArgs
from runtime.hf_io import load_hf_state_dict

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PACKAGE_DIR = Path(__file__).resolve().parent.parent
FULL_SIZE = os.environ.get("SCAFFOLD_FULL_SIZE") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "full_size: full-size model on CPU; runs only with SCAFFOLD_FULL_SIZE=1"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="full-size test; set SCAFFOLD_FULL_SIZE=1 to run it")
    for item in items:
        if "full_size" in item.keywords and not FULL_SIZE:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def hf_config() -> dict[str, Any]:
    """The config.json this package was generated from."""
    return json.loads((PACKAGE_DIR / "hf_config.json").read_text())


@pytest.fixture
def debug_args() -> ModelArgs:
    return gpt_oss_20b_configs["debugmodel"]


def build_hf_model(args: ModelArgs, seed: int = 0) -> GptOssForCausalLM:
    """transformers' reference model with random weights at ``args``' dimensions, fp32, eager."""
    torch.manual_seed(seed)
    config = GptOssConfig.from_dict(args.to_hf())
    config._attn_implementation = "eager"
    return GptOssForCausalLM(config).float().eval()


def hf_checkpoint(hf_model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The tensors of ``hf_model``'s checkpoint files, as ``save_pretrained`` writes them (the
    hub's key names and layout; transformers' in-memory ``state_dict()`` may differ)."""
    with tempfile.TemporaryDirectory() as folder:
        hf_model.save_pretrained(folder)
        return load_hf_state_dict(folder)


def hf_checkpoint_grads(hf_model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """``hf_model``'s gradients under its checkpoint's keys and layout (converted as
    ``save_pretrained`` converts the weights)."""
    grads = {name: p.grad for name, p in hf_model.named_parameters()}
    return revert_weight_conversion(hf_model, grads)
