"""Before/after of the runtime's training-step choices on the benchmark model (issue 6 log).

The generated benchmark llama of ``bench.step``, one process, variants interleaved on the same
model and batch: each variant is a loss (``reference``: ``F.cross_entropy`` on fp32 logits, what
the runtime used before; ``fused``: ``runtime.components.loss.FusedCrossEntropy``) and an AdamW
implementation (``foreach``, the old default; ``fused``; ``for-loop``). Reports wall and process
CPU seconds per step (medians); ``--threads 1`` makes CPU time a measure that other jobs on a
shared machine barely disturb.

Run: ``python -m bench.ablate --threads 1 --repeats 5 reference+foreach fused+foreach
fused+fused``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import machine
from bench.stats import Summary, emit, interleave
from bench.step import Contender, bench_batch, load_bench_model, render_package, warm_up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="LOSS+OPTIMIZER, e.g. fused+fused")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args(argv)

    import torch

    from runtime.components.loss import cross_entropy_loss, reference_cross_entropy_loss

    if options.threads:
        torch.set_num_threads(options.threads)
    losses = {"reference": reference_cross_entropy_loss, "fused": cross_entropy_loss}
    with tempfile.TemporaryDirectory(prefix="bench-ablate-") as tmp:
        _, args, model = load_bench_model(render_package(Path(tmp)))
        tokens, labels = bench_batch(args)
        flags = {"foreach": {"foreach": True}, "fused": {"fused": True}, "for-loop": {}}
        optimizers = {
            name: torch.optim.AdamW(model.parameters(), lr=8e-4, weight_decay=0.1, **kwargs)
            for name, kwargs in flags.items()
        }
        # Every optimizer holds all of the model's parameters, so its zero_grad (set to None)
        # clears the model's gradients.
        contenders = {
            variant: Contender(model, losses[loss_name], optimizers[optimizer_name])
            for variant in options.variants
            for loss_name, optimizer_name in [variant.split("+")]
        }
        warm_up(contenders, 1, tokens, labels)
        samples = interleave(
            {
                variant: functools.partial(contender.step, tokens, labels)
                for variant, contender in contenders.items()
            },
            options.repeats,
        )
    cpu = {variant: contender.cpu_seconds for variant, contender in contenders.items()}
    base = options.variants[0]
    results: dict[str, Any] = {
        "comparison": "ablate",
        "machine": machine.describe(),
        "threads": torch.get_num_threads(),
        "variants": {},
    }
    for variant in options.variants:
        wall, cpu_s = Summary.of(samples[variant]), Summary.of(cpu[variant])
        results["variants"][variant] = {
            "wall": wall.as_dict(),
            "cpu": cpu_s.as_dict(),
            "cpu_speedup_vs_first": Summary.of(cpu[base]).median / cpu_s.median,
            "wall_speedup_vs_first": Summary.of(samples[base]).median / wall.median,
        }
    emit(results, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
