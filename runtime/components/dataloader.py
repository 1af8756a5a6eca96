"""Token batches for training: mock data, local text/jsonl files, local HF ``datasets``.

All sources produce one global stream of samples of ``seq_len + 1`` tokens. Batch ``k`` of the
job is samples ``[k*b*D, (k+1)*b*D)`` (``b`` local batch, ``D`` data-parallel degree); dp rank
``r`` takes the ``r``-th slice of ``b`` samples. So every sample goes to exactly one dp rank,
and the union of what the ranks see does not depend on ``D``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.stateful import Stateful

from runtime.config import ConfigError

# Mock samples are arithmetic progressions mod vocab: learnable, deterministic, cheap.
_MOCK_MAX_STRIDE = 7


def mock_sample(index: int, seq_len: int, vocab_size: int, seed: int) -> torch.Tensor:
    """Sample ``index`` of the mock stream: ``seq_len + 1`` tokens, a function of its arguments."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    start = int(torch.randint(0, vocab_size, (1,), generator=generator))
    stride = int(torch.randint(1, _MOCK_MAX_STRIDE + 1, (1,), generator=generator))
    return (start + stride * torch.arange(seq_len + 1)) % vocab_size


def _pack(documents: Iterable[list[int]], eos_id: int | None, length: int) -> Iterator[list[int]]:
    """Concatenate token lists (with EOS between them) and cut windows of ``length`` tokens."""
    buffer: list[int] = []
    for tokens in documents:
        buffer.extend(tokens)
        if eos_id is not None:
            buffer.append(eos_id)
        while len(buffer) >= length:
            yield buffer[:length]
            buffer = buffer[length:]


def _read_texts(path: Path, kind: str, text_field: str) -> Iterator[str]:
    """The documents of a text file (each file one document) or a jsonl file (``text_field`` of
    each line); a bad file or line is a ConfigError naming it."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if kind == "text":
            yield _utf8(file, file.read_bytes())
            continue
        with file.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                line = _utf8(file, raw, number)
                if line.strip():
                    yield _jsonl_text(file, number, line, text_field)


def _utf8(file: Path, data: bytes, line: int | None = None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"{file}:{line}" if line is not None else f"{file} (byte {exc.start})"
        raise ConfigError(f"dataset file {where} is not UTF-8 text") from None


def _jsonl_text(file: Path, number: int, line: str, text_field: str) -> str:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"dataset file {file}:{number}: not a JSON line ({exc.msg})") from None
    if not isinstance(row, dict) or text_field not in row:
        raise ConfigError(
            f"dataset file {file}:{number}: no {text_field!r} field "
            "(set training.dataset_text_field)"
        )
    text = row[text_field]
    if not isinstance(text, str):
        raise ConfigError(
            f"dataset file {file}:{number}: {text_field!r} is a {type(text).__name__}, not text"
        )
    return text


def _hf_texts(path: Path, text_field: str) -> Iterator[str]:
    import datasets

    if path.is_dir() and (path / "dataset_info.json").is_file():
        dataset = datasets.load_from_disk(str(path))
    else:
        builders = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
        builder = builders.get(path.suffix, "text")
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset["train"]
    for row in dataset:
        yield row[text_field]


class TokenDataLoader(Stateful):
    """Yields ``(inputs, labels)`` of shape ``[local_batch_size, seq_len]`` for one dp rank.

    The loader is infinite (files are repeated); its state is the number of batches consumed,
    so a resumed job continues with the next unseen batch.
    """

    def __init__(
        self,
        samples: Any,
        local_batch_size: int,
        dp_world_size: int,
        dp_rank: int,
    ):
        self._samples = samples
        self.local_batch_size = local_batch_size
        self.dp_world_size = dp_world_size
        self.dp_rank = dp_rank
        self.batch_index = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch for this rank."""
        first = (self.batch_index * self.dp_world_size + self.dp_rank) * self.local_batch_size
        rows = [self._samples(first + offset) for offset in range(self.local_batch_size)]
        self.batch_index += 1
        tokens = torch.stack(rows)
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def state_dict(self) -> dict[str, Any]:
        """``{"batch_index": batches consumed}`` (the same on every rank)."""
        return {"batch_index": self.batch_index}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue after ``state_dict["batch_index"]`` batches."""
        self.batch_index = int(state_dict["batch_index"])


class _StreamSamples:
    """Random access by index into a (re-startable) stream of packed token windows."""

    def __init__(self, make_stream: Any):
        self._make_stream = make_stream
        self._stream: Iterator[list[int]] = iter(())
        self._next_index = 0

    def __call__(self, index: int) -> torch.Tensor:
        if index < self._next_index:
            self._restart()
        for _ in range(index - self._next_index):
            self._take()
        return torch.tensor(self._take(), dtype=torch.long)

    def _restart(self) -> None:
        self._stream = iter(())
        self._next_index = 0

    def _take(self) -> list[int]:
        window = next(self._stream, None)
        if window is None:
            self._stream = self._make_stream()
            window = next(self._stream, None)
            if window is None:
                raise ConfigError("the dataset holds fewer tokens than one sample (seq_len + 1)")
        self._next_index += 1
        return window


def _text_samples(tokenizer: Any, job_config: Any) -> _StreamSamples:
    training = job_config.training
    path = Path(training.dataset_path)
    if not path.exists():
        raise ConfigError(f"training.dataset_path not found: {path}")
    if tokenizer is None:
        raise ConfigError(f"training.dataset {training.dataset!r} needs a tokenizer")

    def make_stream() -> Iterator[list[int]]:
        if training.dataset == "hf":
            texts = _hf_texts(path, training.dataset_text_field)
        else:
            texts = _read_texts(path, training.dataset, training.dataset_text_field)
        documents = (tokenizer.encode(text) for text in texts)
        return _pack(documents, tokenizer.eos_id, training.seq_len + 1)

    return _StreamSamples(make_stream)


def build_dataloader(
    dp_world_size: int,
    dp_rank: int,
    tokenizer: Any,
    job_config: Any,
    vocab_size: int | None = None,
) -> TokenDataLoader:
    """The training data loader for dp rank ``dp_rank`` of ``dp_world_size``.

    ``training.dataset``: ``"mock"`` (needs ``vocab_size``, or a tokenizer's), ``"text"``
    (plain text files), ``"jsonl"`` (``dataset_text_field`` of each line) or ``"hf"`` (a
    ``save_to_disk`` folder or a local json/csv/parquet/text file through ``datasets``).
    """
    training = job_config.training
    if training.dataset == "mock":
        vocab = vocab_size or getattr(tokenizer, "vocab_size", None)
        if not vocab:
            raise ConfigError("mock data needs the model's vocab size")
        seed, seq_len = training.seed, training.seq_len

        def samples(index: int) -> torch.Tensor:
            return mock_sample(index, seq_len, vocab, seed)

    else:
        samples = _text_samples(tokenizer, job_config)
    return TokenDataLoader(samples, training.local_batch_size, dp_world_size, dp_rank)


def take(loader: TokenDataLoader, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The next ``count`` batches of ``loader`` (a helper for tests and tools)."""
    return list(itertools.islice(iter(loader), count))
