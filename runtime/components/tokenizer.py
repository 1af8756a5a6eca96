"""Tokenizers loaded from a local folder (never from the hub)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.config import ConfigError


class LocalTokenizer:
    """A thin wrapper exposing ``encode``, ``eos_id`` and ``vocab_size``.

    Prefers ``tokenizer.json`` through the ``tokenizers`` library; otherwise loads the folder with
    transformers' ``AutoTokenizer`` (``local_files_only``).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        tokenizer_json = self.folder / "tokenizer.json"
        if tokenizer_json.is_file():
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_file(str(tokenizer_json))
            self._hf = None
            self.vocab_size = self._fast.get_vocab_size(with_added_tokens=True)
            self.eos_id = self._find_eos_id()
        else:
            from transformers import AutoTokenizer

            self._fast = None
            self._hf = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            self.vocab_size = len(self._hf)
            self.eos_id = self._hf.eos_token_id

    def _find_eos_id(self) -> int | None:
        config = self.folder / "tokenizer_config.json"
        names = ["</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>"]
        if config.is_file():
            import json

            eos = json.loads(config.read_text()).get("eos_token")
            if isinstance(eos, dict):
                eos = eos.get("content")
            if isinstance(eos, str):
                names.insert(0, eos)
        for name in names:
            token_id = self._fast.token_to_id(name)
            if token_id is not None:
                return token_id
        return None

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        if self._fast is not None:
            return self._fast.encode(text, add_special_tokens=False).ids
        return self._hf.encode(text, add_special_tokens=False)


def build_tokenizer(job_config: Any) -> LocalTokenizer | None:
    """Load ``training.tokenizer_path`` (else ``model.hf_assets_path``); None for mock data."""
    path = job_config.training.tokenizer_path or job_config.model.hf_assets_path
    if job_config.training.dataset == "mock" and not job_config.training.tokenizer_path:
        return None
    if not path:
        raise ConfigError(
            f"training.dataset {job_config.training.dataset!r} needs training.tokenizer_path"
        )
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"tokenizer folder not found: {path}")
    try:
        return LocalTokenizer(folder)
    except Exception as exc:  # tokenizers raises its own Exception for a corrupt tokenizer.json
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[0] if lines else type(exc).__name__
        raise ConfigError(f"cannot load a tokenizer from {path}: {reason}") from None
