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
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import machine
from bench.stats import Summary, interleave
from bench.step import BATCH, PACKAGE, SEQ, bench_config, render_package


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
        package_dir = render_package(Path(tmp))
        sys.path.insert(0, str(package_dir.parent))
        package = __import__(PACKAGE)
        args = package.ModelArgs.from_hf(bench_config())
        torch.manual_seed(0)
        model = package.Transformer(args)
        model.init_weights()
        generator = torch.Generator().manual_seed(1)
        tokens = torch.randint(0, args.vocab_size, (BATCH, SEQ), generator=generator)
        labels = torch.randint(0, args.vocab_size, (BATCH, SEQ), generator=generator)
        flags = {"foreach": {"foreach": True}, "fused": {"fused": True}, "for-loop": {}}
        optimizers = {
            name: torch.optim.AdamW(model.parameters(), lr=8e-4, weight_decay=0.1, **kwargs)
            for name, kwargs in flags.items()
        }
        cpu: dict[str, list[float]] = {variant: [] for variant in options.variants}

        def step(variant: str) -> float:
            loss_name, optimizer_name = variant.split("+")
            start, cpu_start = time.perf_counter(), time.process_time()
            losses[loss_name](model(tokens), labels).backward()
            optimizers[optimizer_name].step()
            model.zero_grad(set_to_none=True)
            cpu[variant].append(time.process_time() - cpu_start)
            return time.perf_counter() - start

        for variant in options.variants:
            step(variant)
            cpu[variant].clear()
        samples = interleave(
            {variant: (lambda v=variant: step(v)) for variant in options.variants},
            options.repeats,
        )
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
    text = json.dumps(results, indent=2)
    if options.json:
        options.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
