"""Comparison 6: peak memory and time of a training step, by vocabulary size (CPU, fp32).

The benchmark llama of ``bench.step`` (hidden 512, 8 heads / 1 kv head, ffn 1408, 4 layers,
batch 4 x 256 tokens) at vocabulary 32000 and at Qwen's 151936. Each contender runs in a fresh
process of its own (one at a time), so that one's buffers never count for another:

- ``generated (output projection in the loss)``: the package ``scaffold new-model`` renders,
  with ``training.fused_output_loss = "on"``: the output projection runs inside the loss, chunk
  by chunk, and no ``[tokens, vocab]`` logits exist;
- ``generated (logits then loss)``: the same model with full logits, then the runtime's fused
  cross entropy on them (``"off"``). The runtime's default, ``"auto"``, is the first at
  vocabulary 151936 and the second at 32000 (``runtime.components.loss.wants_fused_output``);
- ``transformers``: ``LlamaForCausalLM`` (sdpa) with the same weights and its own
  ``loss_function``;
- ``torchtitan``: torchtitan 0.3.0's Llama3 with its ``cross_entropy_loss`` (when its side venv
  from ``bench/setup_torchtitan.sh`` exists; else skipped with the reason).

All use AdamW(fused=True) and ``zero_grad()`` (gradients freed between steps). Memory is the
process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``):

- **step peak**: its rise, during the steps after the first, over the resident set after the
  first step (AdamW state allocated): the working memory of a step, that is gradients,
  activations and the loss's buffers;
- **total peak**: its rise over the resident set before the first step, across all steps: the
  step peak plus the AdamW state (weights and libraries left out of both).

**Step time** is the median of the steps after the first.

Run: ``python -m bench.step_memory --vocab 32000,151936 --steps 4 --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import machine
from bench.stats import emit
from bench.step import (
    BATCH,
    PACKAGE,
    SEQ,
    Contender,
    bench_config,
    build_torchtitan_model,
    import_torchtitan,
    render_package,
    runtime_loss,
)

FUSED = "generated (output projection in the loss)"
CONTENDERS = (FUSED, "generated (logits then loss)", "transformers", "torchtitan")
MIB = 2**20


def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / MIB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    """Reset ``VmHWM`` to the current resident set (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def build(contender: str, package_dir: Path, vocab: int) -> tuple[Contender | None, str | None]:
    """``(contender, None)``, or ``(None, reason)`` when it cannot run here."""
    import torch

    from runtime.config import JobConfig

    config = {**bench_config(), "vocab_size": vocab}
    sys.path.insert(0, str(package_dir.parent))
    package = __import__(PACKAGE)
    args = package.ModelArgs.from_hf(config)
    spec = package.get_train_spec()
    torch.manual_seed(0)
    model = spec.model_cls(args)
    model.init_weights()
    if contender.startswith("generated"):
        setting = "on" if contender == FUSED else "off"
        job_config = JobConfig.from_dict({"training": {"fused_output_loss": setting}})
        optimizer = spec.build_optimizers_fn([model], job_config)
        return Contender(model, runtime_loss(spec, model, job_config), optimizer), None
    if contender == "transformers":
        from transformers import LlamaConfig, LlamaForCausalLM

        hf = LlamaForCausalLM(LlamaConfig(**config, attn_implementation="sdpa"))
        hf.load_state_dict(spec.state_dict_adapter(args, None).to_hf(model.state_dict()))
        del model

        def hf_loss(logits: Any, labels: Any) -> Any:
            return hf.loss_function(
                logits=logits, labels=None, vocab_size=vocab, shift_labels=labels
            )

        optimizer = torch.optim.AdamW(hf.parameters(), lr=8e-4, weight_decay=0.1, fused=True)
        return Contender(lambda tokens: hf(input_ids=tokens).logits, hf_loss, optimizer), None
    torchtitan, reason = import_torchtitan()
    if torchtitan is None:
        return None, reason
    from torchtitan.components.loss import cross_entropy_loss

    del model
    tt = build_torchtitan_model(args)

    def tt_loss(logits: Any, labels: Any) -> Any:
        return cross_entropy_loss(logits, labels) / (BATCH * SEQ)

    optimizer = torch.optim.AdamW(tt.parameters(), lr=8e-4, weight_decay=0.1, fused=True)
    return Contender(tt, tt_loss, optimizer), None


def worker(contender: str, package_dir: Path, vocab: int, steps: int, out: Path) -> None:
    """One contender at one vocabulary size, in this process; writes its numbers to ``out``."""
    import gc

    import torch

    built, reason = build(contender, package_dir, vocab)
    if built is None:
        out.write_text(json.dumps({"skipped": reason}))
        return
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, vocab, (BATCH, SEQ), generator=generator)
    labels = torch.randint(0, vocab, (BATCH, SEQ), generator=generator)
    gc.collect()
    _reset_peak()
    before = _status_mib("VmRSS")
    built.step(tokens, labels)
    first_peak = _status_mib("VmHWM")
    gc.collect()
    _reset_peak()
    steady = _status_mib("VmRSS")
    times = [built.step(tokens, labels) for _ in range(steps - 1)]
    step_peak = _status_mib("VmHWM")
    with torch.no_grad():
        loss = built.loss(tokens, labels).item()
    result = {
        "step_peak_mib": step_peak - steady,
        "total_peak_mib": max(first_peak, step_peak) - before,
        "step_s": statistics.median(times),
        "loss_after": loss,
    }
    out.write_text(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", default="32000,151936", help="vocabulary sizes")
    parser.add_argument("--steps", type=int, default=4, help="steps per contender (at least 2)")
    parser.add_argument("--only", default=",".join(CONTENDERS))
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--package-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        worker(options.worker, options.package_dir, int(options.vocab), options.steps, options.out)
        return 0

    results: dict[str, Any] = {
        "comparison": "step_memory",
        "dims": {**bench_config(), "batch": BATCH, "seq_len": SEQ, "dtype": "float32"},
        "machine": machine.describe(),
        "steps": options.steps,
        "vocab": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for vocab in [int(v) for v in options.vocab.split(",")]:
            folder = Path(tmp) / str(vocab)
            folder.mkdir()
            package_dir = render_package(folder, {**bench_config(), "vocab_size": vocab})
            entries = {}
            for contender in options.only.split(","):
                out = folder / "result.json"
                command = [
                    sys.executable,
                    "-m",
                    "bench.step_memory",
                    "--worker",
                    contender,
                    "--vocab",
                    str(vocab),
                    "--steps",
                    str(options.steps),
                    "--package-dir",
                    str(package_dir),
                    "--out",
                    str(out),
                ]
                print(f"[step_memory] vocab {vocab}: {contender}", file=sys.stderr, flush=True)
                subprocess.run(command, check=True)
                entries[contender] = json.loads(out.read_text())
            results["vocab"][str(vocab)] = entries
    emit(results, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
