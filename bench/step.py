"""Comparison 1: one fp32 training step (forward, cross-entropy, backward, AdamW) on CPU.

Contenders, all at hidden 512, 8 heads / 1 kv head, ffn 1408, 4 layers, vocab 32000,
batch 4 x 256 tokens:

- ``generated``: a llama package rendered by ``scaffold new-model`` from a config.json with those
  dimensions, trained with the runtime's own loss and optimizer builders (the package's
  TrainSpec), compiled per block by ``runtime.distributed.parallelize.apply_compile``;
- ``transformers``: ``LlamaForCausalLM`` (sdpa) holding the same weights, loaded through the
  package's state dict adapter, with its own ``loss_function`` and AdamW(fused=True) (the
  default optimizer of transformers' Trainer on torch >= 2.8); compiled as a whole;
- ``torchtitan``: torchtitan 0.3.0's Llama3 model (fused wqkv, complex RoPE) built from its own
  config classes with the ``ScaledDotProductAttention`` inner attention (flex attention has no
  CPU backward), its cross_entropy_loss and AdamW(fused=True) (its default implementation);
  compiled per block with fullgraph, as its ``apply_compile`` does. torchtitan is imported from
  a separate site-packages (``bench/setup_torchtitan.sh``) appended *after* this venv's, so
  torch stays this venv's; when it is missing the column is skipped with the reason.

Run: ``python -m bench.step [--compile] --repeats N --json out.json``. ``--profile N`` adds,
per contender, where N more steps spend their time (``torch.profiler`` self CPU time by
operator, milliseconds per step; the profiler's own overhead inflates them, so compare the
contenders' columns with each other, not with the step times).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import machine
from bench.stats import Summary, emit, interleave

DIMS = {
    "hidden_size": 512,
    "num_attention_heads": 8,
    "num_key_value_heads": 1,
    "intermediate_size": 1408,
    "num_hidden_layers": 4,
    "vocab_size": 32000,
}
BATCH, SEQ = 4, 256
PACKAGE = "benchllama"
TORCHTITAN_SITE = os.environ.get(
    "BENCH_TORCHTITAN_SITE",
    f"/tmp/tt-venv/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages",
)


def keep_freed_memory() -> bool:
    """Keep freed blocks up to 1 GiB in the heap (glibc ``mallopt``); False without glibc.

    By default glibc maps every block over 32 MiB fresh and unmaps it on free, so buffers a
    step allocates again each time (logits, their gradient, embedding and output-layer
    gradients) are page-faulted back in every step. Every contender shares the process, so all
    of them run under the same allocator either way.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 31))


def bench_config() -> dict[str, Any]:
    """The config.json of the benchmark model: TinyLlama's features at small dimensions."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **DIMS,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    }


def new_model(
    source: str, folder: Path, *options: str, env: Mapping[str, str] | None = None
) -> None:
    """Run ``python -m scaffolder new-model SOURCE --output FOLDER --no-verify [OPTIONS...]``."""
    command = [sys.executable, "-m", "scaffolder", "new-model", source, "--output", str(folder)]
    command.append("--no-verify")  # the benchmarks time training, not the generated tests
    subprocess.run([*command, *options], check=True, capture_output=True, text=True, env=env)


def render_package(folder: Path, config: dict[str, Any] | None = None, name: str = PACKAGE) -> Path:
    """``scaffold new-model`` ``config`` (default: the benchmark's) into ``folder`` as ``name``;
    returns the package dir."""
    config_path = folder / "config.json"
    config_path.write_text(json.dumps(config or bench_config(), indent=2))
    new_model(str(config_path), folder, "--name", name, "--force")
    return folder / name


def import_bench_package(package_dir: Path) -> tuple[Any, Any]:
    """The rendered benchmark package (imported from ``package_dir``) and its ``ModelArgs``."""
    sys.path.insert(0, str(package_dir.parent))
    package = __import__(PACKAGE)
    return package, package.ModelArgs.from_hf(bench_config())


def load_bench_model(package_dir: Path) -> tuple[Any, Any, Any]:
    """``(package, args, model)``: the package's model, seeded with 0 and ``init_weights``-ed."""
    import torch

    package, args = import_bench_package(package_dir)
    torch.manual_seed(0)
    model = package.get_train_spec().model_cls(args)
    model.init_weights()
    return package, args, model


def bench_batch(args: Any) -> tuple[Any, Any]:
    """The benchmark's ``(tokens, labels)``: ``BATCH x SEQ`` random ids drawn with seed 1."""
    import torch

    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, args.vocab_size, (BATCH, SEQ), generator=generator)
    labels = torch.randint(0, args.vocab_size, (BATCH, SEQ), generator=generator)
    return tokens, labels


def import_torchtitan() -> tuple[Any, str | None]:
    """torchtitan's modules from the side venv, or ``(None, reason)``."""
    if os.path.isdir(TORCHTITAN_SITE) and TORCHTITAN_SITE not in sys.path:
        sys.path.append(TORCHTITAN_SITE)
    try:
        import torchtitan
        from torchtitan.models.llama3 import model as _  # noqa: F401
    except Exception as exc:  # ImportError, or a torch/triton mismatch inside torchtitan
        reason = f"torchtitan not importable ({type(exc).__name__}: {exc})"
        return None, f"{reason}; run bench/setup_torchtitan.sh (it builds {TORCHTITAN_SITE})"
    return torchtitan, None


def build_torchtitan_model(args: Any) -> Any:
    """torchtitan's Llama3 at the benchmark dims, sdpa inner attention, its own init."""
    from torch import nn
    from torchtitan.models.common import ComplexRoPE, Embedding, Linear, RMSNorm
    from torchtitan.models.common.attention import ScaledDotProductAttention
    from torchtitan.models.common.config_utils import make_ffn_config, make_gqa_config
    from torchtitan.models.llama3 import Llama3Model
    from torchtitan.models.llama3.model import Llama3TransformerBlock

    init = {"weight": functools.partial(nn.init.trunc_normal_, std=args.initializer_range)}

    def norm() -> Any:
        return RMSNorm.Config(normalized_shape=args.dim, eps=args.norm_eps)

    layers = [
        Llama3TransformerBlock.Config(
            attention_norm=norm(),
            ffn_norm=norm(),
            attention=make_gqa_config(
                dim=args.dim,
                n_heads=args.n_heads,
                n_kv_heads=args.n_kv_heads,
                wqkv_param_init=init,
                wo_param_init=init,
                inner_attention=ScaledDotProductAttention.Config(),
                fuse_qkv=True,  # what torchtitan's llama3 flavors use
                rope=ComplexRoPE.Config(
                    dim=args.head_dim, max_seq_len=args.max_seq_len, theta=args.rope_theta
                ),
            ),
            feed_forward=make_ffn_config(
                dim=args.dim, hidden_dim=args.ffn_dim, w1_param_init=init, w2w3_param_init=init
            ),
        )
        for _ in range(args.n_layers)
    ]
    config = Llama3Model.Config(
        dim=args.dim,
        vocab_size=args.vocab_size,
        tok_embeddings=Embedding.Config(num_embeddings=args.vocab_size, embedding_dim=args.dim),
        norm=norm(),
        lm_head=Linear.Config(in_features=args.dim, out_features=args.vocab_size),
        layers=layers,
    )
    model = config.build()
    model.init_states()
    return model


class Contender:
    """A model with its loss and optimizer; ``step()`` runs and times one training step."""

    def __init__(self, forward: Any, loss_fn: Any, optimizer: Any) -> None:
        self.forward, self.loss_fn, self.optimizer = forward, loss_fn, optimizer
        self.cpu_seconds: list[float] = []

    def loss(self, tokens: Any, labels: Any) -> Any:
        return self.loss_fn(self.forward(tokens), labels)

    def step(self, tokens: Any, labels: Any) -> float:
        """Wall seconds of one step; its process CPU seconds go to ``cpu_seconds``."""
        start, cpu_start = time.perf_counter(), time.process_time()
        self.loss(tokens, labels).backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        wall = time.perf_counter() - start
        self.cpu_seconds.append(time.process_time() - cpu_start)
        return wall


def runtime_loss(spec: Any, model: Any, job_config: Any) -> Any:
    """The loss the runtime's trainer uses for ``model`` on ``BATCH x SEQ`` micro-batches: where
    ``training.fused_output_loss`` picks it, ``model`` returns hidden states and the loss applies
    the output projection; else the TrainSpec's loss on logits."""
    from runtime.components.loss import fused_output_cross_entropy_loss, wants_fused_output

    setting = job_config.training.fused_output_loss
    logits = BATCH * SEQ * model.output.weight.shape[0]
    if wants_fused_output(setting, model, logits):
        model.skip_output = True
        return functools.partial(fused_output_cross_entropy_loss, model)
    return spec.build_loss_fn(job_config)


def warm_up(
    contenders: Mapping[str, Contender], steps: int, tokens: Any, labels: Any
) -> dict[str, float]:
    """``steps`` untimed steps of each contender; returns their wall seconds per contender.

    The warm-up steps' CPU seconds are dropped, so ``cpu_seconds`` holds timed steps only.
    """
    seconds = {}
    for name, contender in contenders.items():
        start = time.perf_counter()
        for _ in range(steps):
            contender.step(tokens, labels)
        seconds[name] = time.perf_counter() - start
        contender.cpu_seconds.clear()
    return seconds


def build_contenders(
    package_dir: Path, compile_: bool, only: set[str]
) -> tuple[dict[str, Contender], dict[str, str], Any, int]:
    import torch

    package, args, ours = load_bench_model(package_dir)
    from runtime.config import JobConfig
    from runtime.distributed.parallelize import apply_compile

    spec = package.get_train_spec()
    job_config = JobConfig.from_dict({"compile": {"enable": compile_}})
    hf_state = spec.state_dict_adapter(args, None).to_hf(ours.state_dict())
    # The same architecture for all three: count FLOPs once, with the package's formula.
    _, flops_per_token = args.get_nparams_and_flops(ours, SEQ)

    contenders: dict[str, Contender] = {}
    skipped: dict[str, str] = {}
    if "generated" in only:
        if compile_:
            apply_compile(ours, job_config.compile)
        contenders["generated"] = Contender(
            ours,
            runtime_loss(spec, ours, job_config),
            spec.build_optimizers_fn([ours], job_config),
        )
    if "transformers" in only:
        from transformers import LlamaConfig, LlamaForCausalLM

        hf = LlamaForCausalLM(LlamaConfig(**bench_config(), attn_implementation="sdpa"))
        hf.load_state_dict(hf_state)
        vocab = args.vocab_size

        def hf_loss(logits: Any, labels: Any, model: Any = hf) -> Any:
            return model.loss_function(
                logits=logits, labels=None, vocab_size=vocab, shift_labels=labels
            )

        hf_forward = torch.compile(hf) if compile_ else hf
        contenders["transformers"] = Contender(
            lambda tokens: hf_forward(input_ids=tokens).logits,
            torch.compile(hf_loss) if compile_ else hf_loss,
            torch.optim.AdamW(hf.parameters(), lr=8e-4, weight_decay=0.1, fused=True),
        )
    if "torchtitan" in only:
        torchtitan, reason = import_torchtitan()
        if torchtitan is None:
            skipped["torchtitan"] = reason
        else:
            from torchtitan.components.loss import cross_entropy_loss

            tt = build_torchtitan_model(args)
            if compile_:
                for block in tt.layers.children():
                    block.compile(fullgraph=True)
            ntokens = BATCH * SEQ

            def tt_loss(logits: Any, labels: Any) -> Any:
                return cross_entropy_loss(logits, labels) / ntokens

            contenders["torchtitan"] = Contender(
                tt,
                torch.compile(tt_loss) if compile_ else tt_loss,
                torch.optim.AdamW(tt.parameters(), lr=8e-4, weight_decay=0.1, fused=True),
            )
    return contenders, skipped, args, flops_per_token


def profile_steps(
    contenders: dict[str, Contender], steps: int, tokens: Any, labels: Any, top: int = 16
) -> dict[str, Any]:
    """Self CPU time per operator over ``steps`` more steps of each contender: the ``top``
    operators of any contender, each with every contender's milliseconds and calls per step,
    and each contender's total."""
    from torch.profiler import ProfilerActivity, profile

    per_op: dict[str, dict[str, tuple[float, int]]] = {}
    totals = {}
    for name, contender in contenders.items():
        timed = list(contender.cpu_seconds)  # profiled steps stay out of the CPU-time medians
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                contender.step(tokens, labels)
        contender.cpu_seconds[:] = timed
        events = prof.key_averages()
        totals[name] = sum(event.self_cpu_time_total for event in events) / 1e3 / steps
        for event in events:
            per_op.setdefault(event.key, {})[name] = (
                event.self_cpu_time_total / 1e3 / steps,
                event.count // steps,
            )
    ranked = sorted(per_op, key=lambda op: -max(ms for ms, _ in per_op[op].values()))[:top]
    return {
        "steps": steps,
        "total_ms": totals,
        "ops": [
            {
                "op": op,
                **{
                    name: {"ms": round(ms, 1), "calls": calls}
                    for name, (ms, calls) in per_op[op].items()
                },
            }
            for op in ranked
        ],
    }


def summarize(
    samples: Mapping[str, list[float]],
    contenders: Mapping[str, Contender],
    flops_per_step: float,
    peak: float,
) -> dict[str, dict[str, Any]]:
    """Per contender: the wall-time summary, MFU against ``peak`` and the median CPU seconds."""
    entries = {}
    for name, times in samples.items():
        summary = Summary.of(times)
        entry: dict[str, Any] = summary.as_dict()
        entry["mfu"] = flops_per_step / (summary.median * peak)
        entry["cpu_median"] = Summary.of(contenders[name].cpu_seconds).median
        entries[name] = entry
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="torch.compile every contender")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per contender")
    parser.add_argument("--only", default="generated,transformers,torchtitan")
    parser.add_argument("--package-dir", type=Path, help="an already rendered package")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="then profile N more steps of each contender (self CPU time by operator)",
    )
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="raise glibc's mmap and trim thresholds to 1 GiB so freed buffers stay in the heap",
    )
    options = parser.parse_args(argv)
    if options.keep_freed_memory and not keep_freed_memory():
        parser.error("--keep-freed-memory needs glibc (mallopt)")

    import torch

    if options.threads:
        torch.set_num_threads(options.threads)

    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        package_dir = options.package_dir or render_package(Path(tmp))
        peak_before = machine.matmul_peak()
        contenders, skipped, args, flops_per_token = build_contenders(
            package_dir, options.compile, set(options.only.split(","))
        )
        tokens, labels = bench_batch(args)

        parity = {}
        if "generated" in contenders and "transformers" in contenders:
            with torch.no_grad():
                ours = contenders["generated"].loss(tokens, labels).item()
                theirs = contenders["transformers"].loss(tokens, labels).item()
            parity = {"generated": ours, "transformers": theirs, "abs_diff": abs(ours - theirs)}

        warmup_s = warm_up(contenders, options.warmup, tokens, labels)
        # The matmul peak is re-measured every round; the best of all rounds is the peak.
        runs = {"matmul_peak": functools.partial(machine.matmul_peak, repeats=3)}
        runs.update(
            {
                name: functools.partial(contender.step, tokens, labels)
                for name, contender in contenders.items()
            }
        )
        samples = interleave(runs, options.repeats)
        peak = max(peak_before, *samples.pop("matmul_peak"))
        profiled = (
            profile_steps(contenders, options.profile, tokens, labels) if options.profile else None
        )

    flops_per_step = flops_per_token * BATCH * SEQ
    results: dict[str, Any] = {
        "comparison": "step",
        "compile": options.compile,
        "dims": {**DIMS, "batch": BATCH, "seq_len": SEQ, "dtype": "float32"},
        "machine": machine.describe(),
        "torch_threads": torch.get_num_threads(),
        "keep_freed_memory": options.keep_freed_memory,
        "torchtitan": machine.package_version("torchtitan") if "torchtitan" in contenders else None,
        "matmul_peak_flops": peak,
        "flops_per_step": flops_per_step,
        "loss_parity": parity,
        "warmup_s": warmup_s,
        "skipped": skipped,
    }
    results["contenders"] = summarize(samples, contenders, flops_per_step, peak)
    if profiled:
        results["profile"] = profiled
    emit(results, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
