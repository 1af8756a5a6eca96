"""Comparison 4: memory per rank under FSDP2 on 1, 2 and 4 ranks (CPU, gloo).

The model is the 44M-parameter benchmark llama of ``bench.step`` (rendered by
``scaffold new-model``), built the runtime's way: on meta, the package's ``parallelize_fn``
(FSDP2 over ``dp_shard`` = world size), ``to_empty`` + ``init_weights``, the package's
optimizer builder; then a few steps of batch 1 x 128 tokens. Each rank reports

- the bytes it holds of parameters, gradients and AdamW state (local shards, exact), which
  should fall about 1/N, and
- its peak resident set size (``ru_maxrss``) and the growth of RSS over the process's
  baseline before the model was built (libraries and the gloo buffers make up the rest).

Run: ``python -m bench.fsdp_memory --ranks 1,2,4 --json out.json`` (launches torchrun itself).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import machine
from bench.stats import emit, run_worker

MIB = 2**20


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def _local_bytes(tensor: Any) -> int:
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def worker(package_dir: Path, steps: int, out: Path) -> None:
    """One rank (under torchrun)."""
    import torch
    import torch.distributed as dist

    from bench.step import import_bench_package
    from runtime.config import JobConfig
    from runtime.distributed import ParallelDims
    from runtime.distributed.utils import init_distributed

    baseline = _rss_mib()
    package, args = import_bench_package(package_dir)
    device = init_distributed()
    world = dist.get_world_size()
    job_config = JobConfig.from_dict({"training": {"local_batch_size": 1, "seq_len": 128}})
    dims = ParallelDims.from_config(job_config.parallelism, world)
    dims.build_mesh(device.type)
    spec = package.get_train_spec()
    with torch.device("meta"):
        model = spec.model_cls(args)
    model = spec.parallelize_fn(model, dims, job_config)
    model.to_empty(device=device)
    torch.manual_seed(0)
    with torch.no_grad():
        model.init_weights(buffer_device=device)
    optimizers = spec.build_optimizers_fn([model], job_config, dims)
    loss_fn = spec.build_loss_fn(job_config)
    generator = torch.Generator().manual_seed(dist.get_rank())
    grad_bytes = 0
    for _ in range(steps):
        tokens = torch.randint(0, args.vocab_size, (1, 129), generator=generator)
        loss_fn(model(tokens[:, :-1]), tokens[:, 1:]).backward()
        grad_bytes = sum(_local_bytes(p.grad) for p in model.parameters() if p.grad is not None)
        optimizers.step()
        optimizers.zero_grad()
    param_bytes = sum(_local_bytes(p) for p in model.parameters())
    optim_bytes = 0
    for optimizer in optimizers.optimizers:
        for state in optimizer.state.values():
            optim_bytes += sum(
                _local_bytes(v) for v in state.values() if isinstance(v, torch.Tensor) and v.dim()
            )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "rank": dist.get_rank(),
        "params_mib": param_bytes / MIB,
        "grads_mib": grad_bytes / MIB,
        "optimizer_mib": optim_bytes / MIB,
        "state_mib": (param_bytes + grad_bytes + optim_bytes) / MIB,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": peak_rss,
        "peak_rss_growth_mib": peak_rss - baseline,
    }
    reports: list[Any] = [None] * world
    dist.all_gather_object(reports, report)
    if dist.get_rank() == 0:
        out.write_text(json.dumps(reports))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--package-dir", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        from runtime.distributed.utils import exit_process

        worker(options.package_dir, options.steps, options.worker)
        exit_process(0)  # skips the interpreter teardown gloo's threads can abort in

    from bench.step import render_package

    results: dict[str, Any] = {"comparison": "fsdp_memory", "machine": machine.describe()}
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        package_dir = render_package(Path(tmp))
        for ranks in [int(r) for r in options.ranks.split(",")]:
            out = Path(tmp) / f"ranks{ranks}.json"
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            command += [f"--nproc_per_node={ranks}", "-m", "bench.fsdp_memory"]
            command += ["--worker", str(out), "--package-dir", str(package_dir)]
            command += ["--steps", str(options.steps)]
            runs[str(ranks)] = run_worker(command, out)
    results["command"] = (
        "torchrun --standalone --nproc_per_node=N -m bench.fsdp_memory --worker ..."
    )
    results["runs"] = runs
    emit(results, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
