"""Comparison 6: peak host memory per rank of HF checkpoint import and export (CPU, gloo).

The model is the committed TinyLlama package (``generated_examples/tinyllama_1_1b_chat_v1_0``),
flavor ``1.1B`` by default (optionally with smaller dimensions, ``--overrides dim=512,...``),
fp32. A folder of random weights is written as transformers lays it out (``config.json``,
1 GiB safetensors shards and ``model.safetensors.index.json``). Then, on 1, 2 and 4 ranks: the
model is built the runtime's way (on meta, the package's ``parallelize_fn``: FSDP2 over all
ranks; ``to_empty``), ``runtime.hf.import_hf`` loads the folder, ``runtime.hf.export_hf`` writes
it out again. Each rank reports its RSS before each phase and the phase's peak RSS (VmHWM, reset
through ``/proc/self/clear_refs`` before the phase); the "growth" is the peak over the RSS before
the phase (for the import: the model's shard it fills plus everything the import holds on the
way; the model's pages are untouched before, so not resident).

With ``--mxfp4`` the tensors the package's adapter names in ``mxfp4_sources`` (gpt-oss's
experts) are written as the hub stores them, MXFP4 ``_blocks`` / ``_scales`` pairs
(``runtime.mxfp4.quantize_mxfp4``), and the import dequantizes them.

Run: ``python -m bench.hf_io_memory --ranks 1,2,4 --json out.json`` (launches torchrun itself).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import machine
from bench.stats import emit, run_worker

MIB = 2**20
ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "generated_examples" / "tinyllama_1_1b_chat_v1_0"
SHARD_BYTES = 2**30


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    """Make VmHWM (the peak RSS) the current RSS."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _overrides(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (item.split("=") for item in text.split(",") if item)}


def load_package(package_dir: Path, flavor: str, overrides: dict[str, int]):
    """``(train spec, model args)`` of the package's ``flavor`` with ``overrides``."""
    sys.path.insert(0, str(package_dir.parent))
    try:
        package = importlib.import_module(package_dir.name)
    finally:
        sys.path.remove(str(package_dir.parent))
    spec = package.get_train_spec()
    return spec, dataclasses.replace(spec.model_args[flavor], **overrides)


def write_random_folder(
    package_dir: Path, flavor: str, overrides: dict[str, int], out: Path, mxfp4: bool = False
):
    """A transformers folder of random fp32 weights for the flavor, written shard by shard (no
    more than one shard in memory); with ``mxfp4``, the adapter's MXFP4 tensors as the hub's
    pairs. Returns the bytes written."""
    import torch
    from safetensors.torch import save_file

    from runtime.hf import hf_config
    from runtime.hf_io import INDEX_FILE
    from runtime.mxfp4 import BLOCKS_SUFFIX

    spec, args = load_package(package_dir, flavor, overrides)
    with torch.device("meta"):
        model = spec.model_cls(args)
    adapter = spec.state_dict_adapter(args, None)
    metas = adapter.to_hf(model.state_dict())
    quantized: dict[str, bool] = {}  # key -> stored transposed
    if mxfp4:
        pairs = adapter.mxfp4_sources([key + BLOCKS_SUFFIX for key in metas])
        quantized = {key: pairs[key] for key in metas if key in pairs}
        if not quantized:
            raise SystemExit(f"{package_dir.name}: the adapter names no MXFP4 tensors")
    stored_bytes = {  # MXFP4: half a byte a value and a byte of scale per 32
        key: meta.numel() * 17 // 32 if key in quantized else meta.numel() * 4
        for key, meta in metas.items()
    }
    shards: list[list[str]] = [[]]
    size = 0
    for key in metas:
        nbytes = stored_bytes[key]
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    weight_map = {}
    for number, keys in enumerate(shards, start=1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for key in keys:
            value = torch.randn(metas[key].shape, generator=generator) * 0.02
            if key in quantized:
                tensors.update(_mxfp4_pair(key, value, transposed=quantized[key]))
            else:
                tensors[key] = value
        save_file(tensors, str(out / name), metadata={"format": "pt"})
        weight_map.update({stored: name for stored in tensors})
    total = sum(stored_bytes.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2))
    config = hf_config(args, json.loads((package_dir / "hf_config.json").read_text()), "float32")
    if quantized:
        config["quantization_config"] = {"quant_method": "mxfp4"}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return total


def _mxfp4_pair(key: str, value, transposed: bool) -> dict[str, Any]:
    """``key``'s ``_blocks`` / ``_scales`` pair for ``value`` (stored transposed if so), quantized
    one leading entry (expert) at a time: quantize_mxfp4's work tensors are 16 times its input."""
    import torch

    from runtime.mxfp4 import BLOCKS_SUFFIX, SCALES_SUFFIX, quantize_mxfp4

    stored = value.transpose(-2, -1) if transposed else value
    pieces = [quantize_mxfp4(entry) for entry in stored.reshape(-1, *stored.shape[-2:])]
    blocks = torch.stack([b for b, _ in pieces]).reshape(*stored.shape[:-1], -1, 16)
    scales = torch.stack([s for _, s in pieces]).reshape(*stored.shape[:-1], -1)
    return {key + BLOCKS_SUFFIX: blocks, key + SCALES_SUFFIX: scales}


def worker(package_dir: Path, flavor: str, overrides: dict[str, int], folder: Path, out: Path):
    """One rank (under torchrun, or alone): import then export, measuring each."""
    import torch
    import torch.distributed as dist

    from runtime.config import JobConfig
    from runtime.distributed import ParallelDims
    from runtime.distributed.utils import init_distributed
    from runtime.hf import export_hf, import_hf

    baseline = _status_mib("VmRSS")
    spec, args = load_package(package_dir, flavor, overrides)
    device = init_distributed()
    world = dist.get_world_size()
    job_config = JobConfig.from_dict({})
    dims = ParallelDims.from_config(job_config.parallelism, world)
    dims.build_mesh(device.type)
    with torch.device("meta"):
        model = spec.model_cls(args)
    model = spec.parallelize_fn(model, dims, job_config)
    model.to_empty(device=device)
    adapter = spec.state_dict_adapter(args, None)
    local = sum(
        (p.to_local() if hasattr(p, "to_local") else p).numel() * 4 for p in model.parameters()
    )
    report: dict[str, Any] = {"rank": dist.get_rank(), "baseline_rss_mib": baseline}
    phases = {
        "import": lambda: import_hf([model], adapter, folder, args, flavor),
        "export": lambda: export_hf([model], adapter, args, dims, out.with_suffix(".hf")),
    }
    for phase, action in phases.items():
        dist.barrier()
        _reset_peak()
        before = _status_mib("VmRSS")
        start = time.perf_counter()
        action()
        report[f"{phase}_s"] = time.perf_counter() - start
        peak = _status_mib("VmHWM")
        report[f"{phase}_before_rss_mib"] = before
        report[f"{phase}_peak_rss_mib"] = peak
        report[f"{phase}_growth_mib"] = peak - before
    report["local_params_mib"] = local / MIB
    reports: list[Any] = [None] * world
    dist.all_gather_object(reports, report)
    if dist.get_rank() == 0:
        out.write_text(json.dumps(reports))


def run_ranks(
    ranks: int, package_dir: Path, flavor: str, overrides: str, folder: Path, tmp: Path
) -> dict[str, Any]:
    """One measurement on ``ranks`` ranks (one plain process for 1); its per-rank reports."""
    out = tmp / f"ranks{ranks}.json"
    command = [sys.executable]
    if ranks > 1:
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    command += ["-m", "bench.hf_io_memory", "--worker", str(out), "--folder", str(folder)]
    command += ["--package-dir", str(package_dir), "--flavor", flavor, "--overrides", overrides]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    entry = run_worker(command, out, env=env, cwd=ROOT)
    shutil.rmtree(out.with_suffix(".hf"), ignore_errors=True)  # the export: gigabytes
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--flavor", default="1.1B")
    parser.add_argument("--overrides", default="", help="model args, e.g. dim=512,n_layers=4")
    parser.add_argument("--package-dir", type=Path, default=PACKAGE_DIR)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--folder", type=Path, help="an HF folder to read (default: write one)")
    parser.add_argument(
        "--mxfp4", action="store_true", help="write the adapter's MXFP4 tensors as the hub does"
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    overrides = _overrides(options.overrides)
    if options.worker:
        from runtime.distributed.utils import exit_process

        worker(options.package_dir, options.flavor, overrides, options.folder, options.worker)
        exit_process(0)  # skips the interpreter teardown gloo's threads can abort in
    results: dict[str, Any] = {"comparison": "hf_io_memory", "machine": machine.describe()}
    results["model"] = {"flavor": options.flavor, "overrides": overrides}
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-hf-io-") as tmp:
        folder = options.folder or Path(tmp) / "hf"
        if options.folder is None:
            size = write_random_folder(
                options.package_dir, options.flavor, overrides, folder, options.mxfp4
            )
            results["checkpoint_mib"] = size / MIB
        for ranks in [int(r) for r in options.ranks.split(",")]:
            runs[str(ranks)] = run_ranks(
                ranks, options.package_dir, options.flavor, options.overrides, folder, Path(tmp)
            )
    results["command"] = f"python -m bench.hf_io_memory --ranks {options.ranks}" + (
        f" --flavor {options.flavor}" + (f" --overrides {options.overrides}" if overrides else "")
    )
    if options.package_dir != PACKAGE_DIR:
        results["command"] += f" --package-dir {options.package_dir}"
    if options.mxfp4:
        results["command"] += " --mxfp4"
    results["runs"] = runs
    emit(results, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
