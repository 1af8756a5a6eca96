"""The output projection and the loss alone: full logits vs the fused output loss (CPU, fp32).

``hidden [tokens, dim]`` (the final normed hidden states) times the output weight
``[vocab, dim]``, mean token cross entropy, backward to both; the model's blocks left out, so
what differs between the contenders is all that is measured:

- ``logits then loss``: ``hidden @ weight.T`` (full ``[tokens, vocab]`` logits), then the
  runtime's ``FusedCrossEntropy`` (gradient written over the logits), autograd's backward of the
  projection;
- ``fused, 2^k logits a chunk``: ``FusedOutputCrossEntropy`` (the output projection inside the
  loss, chunk by chunk of tokens, one chunk buffer) at each chunk size given.

Each round runs every contender once, in order (interleaved); times are the median of the
rounds, wall and process CPU seconds (with ``--threads 1`` the CPU seconds barely move when
other jobs share the machine). The gradients of the contenders are checked equal first.

Run: ``python -m bench.output_loss --vocab 32000,151936 --chunks 24,26 --threads 1``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import machine
from bench.stats import emit


def contenders(tokens: int, dim: int, vocab: int, chunks: list[int]) -> dict[str, Any]:
    """``{name: step}``: each step builds fresh leaves, runs forward and backward, and returns
    ``(loss, hidden gradient, weight gradient)``."""
    import torch

    from runtime.components.loss import FusedCrossEntropy, FusedOutputCrossEntropy

    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(tokens, dim, generator=generator)
    weight = torch.randn(vocab, dim, generator=generator) * 0.02
    labels = torch.randint(0, vocab, (tokens,), generator=generator)

    def logits_then_loss() -> tuple[Any, ...]:
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        loss = FusedCrossEntropy.apply(h @ w.t(), labels, -100)
        loss.backward()
        return loss, h.grad, w.grad

    def fused(elements: int):
        def step() -> tuple[Any, ...]:
            h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
            rows = max(1, elements // vocab)
            loss = FusedOutputCrossEntropy.apply(h, w, labels, 0, None, None, rows, -100)
            loss.backward()
            return loss, h.grad, w.grad

        return step

    runs = {"logits then loss": logits_then_loss}
    runs.update({f"fused, 2^{k} logits a chunk": fused(2**k) for k in chunks})
    return runs


def measure(runs: dict[str, Any], repeats: int) -> dict[str, dict[str, float]]:
    """Medians of wall and CPU seconds per contender over ``repeats`` interleaved rounds."""
    import torch

    reference = runs["logits then loss"]()
    for name, run in runs.items():
        for got, expected in zip(run(), reference, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6, msg=name)
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    return {
        name: {"wall_s": statistics.median(wall[name]), "cpu_s": statistics.median(cpu[name])}
        for name in runs
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", default="32000,151936")
    parser.add_argument("--chunks", default="24,26", help="log2 of the logits a chunk holds")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args(argv)

    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    chunks = [int(k) for k in options.chunks.split(",")]
    results: dict[str, Any] = {
        "comparison": "output_loss",
        "machine": machine.describe(),
        "torch_threads": torch.get_num_threads(),
        "tokens": options.tokens,
        "dim": options.dim,
        "command": "python -m bench.output_loss "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "by_vocab": {},
    }
    for vocab in [int(v) for v in options.vocab.split(",")]:
        runs = contenders(options.tokens, options.dim, vocab, chunks)
        results["by_vocab"][str(vocab)] = measure(runs, options.repeats)
    emit(results, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
