"""Base class for converting between a generated model's state dict and transformers' one."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch


class StateDictAdapter(ABC):
    """Maps state dicts between the generated model and the Hugging Face checkpoint layout.

    Args:
        model_args: the model's ``ModelArgs``.
        hf_assets_path: optional folder with Hugging Face assets (``config.json``,
            ``model.safetensors.index.json``); used to keep the original shard layout on export.
    """

    # Endings of checkpoint keys that an HF export writes in float32 whatever its dtype (those
    # transformers keeps in float32: its ``_keep_in_fp32_modules_strict``).
    float32_keys: tuple[str, ...] = ()

    def hf_dtype(self, key: str, dtype: torch.dtype) -> torch.dtype:
        """The dtype an HF export in ``dtype`` writes checkpoint tensor ``key`` in: float32 for
        the ``float32_keys``, else ``dtype``."""
        return torch.float32 if self.float32_keys and key.endswith(self.float32_keys) else dtype

    def __init__(self, model_args: Any, hf_assets_path: str | Path | None) -> None:
        self.model_args = model_args
        self.hf_assets_path = Path(hf_assets_path) if hf_assets_path else None
        self.fqn_to_index_mapping: dict[str, int] | None = None
        if self.hf_assets_path is not None:
            index = self.hf_assets_path / "model.safetensors.index.json"
            if index.is_file():
                weight_map = json.loads(index.read_text())["weight_map"]
                self.fqn_to_index_mapping = {
                    key: int(name.split("-")[1]) for key, name in weight_map.items()
                }

    @abstractmethod
    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """Convert the generated model's state dict to transformers' key names and layout."""

    @abstractmethod
    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        """Convert a transformers state dict to the generated model's key names and layout.

        Sharded import (``runtime.hf_shards``) also calls it on meta tensors, one checkpoint key
        at a time, to learn which checkpoint tensor makes which model tensor: renames, splits,
        transposes and other views of one tensor are read slice by slice.
        """

    def stacked_sources(self, hf_keys: Iterable[str]) -> dict[str, list[str]]:
        """Model tensors that ``from_hf`` stacks from several checkpoint tensors along a new
        first dimension (per-expert weights) -> those checkpoint keys, in stacking order.

        Lets each rank read only the experts it holds; the default names none.
        """
        return {}

    def mxfp4_sources(self, hf_keys: Iterable[str]) -> dict[str, bool]:
        """Checkpoint tensors stored as MXFP4 pairs (``<key>_blocks`` / ``<key>_scales`` among
        ``hf_keys``, :mod:`runtime.mxfp4`) that ``from_hf`` dequantizes -> whether ``<key>``,
        the float32 tensor ``from_hf`` also takes in the pair's place (as ``save_pretrained``
        writes it), is the transpose of the pair's dequantized ``[..., rows, cols]``.

        Lets each rank read and dequantize only the slices it holds; the default names none
        (the pairs are then read and dequantized whole).
        """
        return {}
