"""Comparison 5: one fp32 training step of a mixture of experts on CPU.

A Qwen3-MoE-shaped model: hidden 512, 8 heads / 2 kv heads (head_dim 64), 8 experts of 384
hidden units, top-2 renormalized, 4 layers, vocab 32000, batch 4 x 256 tokens; forward,
cross-entropy plus router_aux_loss_coef (0.001) times the load-balancing loss, backward, AdamW.

- ``generated``: the package ``scaffold new-model`` renders from that config.json, with the
  runtime's loss and optimizer builders (the package's TrainSpec) and its load-balancing loss
  (``runtime.moe.LoadBalancer``); experts multiplied with ``torch._grouped_mm``;
- ``generated, expert loop``: the same model with ``use_grouped_mm`` off (one expert after the
  other): what the grouped matmul buys;
- ``generated, output projection in the loss``: the same model with
  ``training.fused_output_loss = "on"`` (at this vocabulary the default, ``"auto"``, computes
  full logits, then the runtime's fused cross entropy on them): what the fused output loss
  costs in time where it saves little memory;
- ``transformers``: ``Qwen3MoeForCausalLM`` (sdpa; experts implementation as named) loaded from
  the generated model's weights exported through its state dict adapter (``save_pretrained``
  layout), ``output_router_logits`` on so that its loss carries the same load-balancing term,
  AdamW(fused=True).

Run: ``python -m bench.moe_step --repeats N --json out.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import machine
from bench.stats import emit, interleave
from bench.step import BATCH, SEQ, Contender, render_package, runtime_loss, summarize, warm_up

PACKAGE = "benchmoe"
DIMS = {
    "hidden_size": 512,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 384,
    "num_hidden_layers": 4,
    "vocab_size": 32000,
}


def bench_config() -> dict[str, Any]:
    """The config.json of the benchmark model (Qwen3-30B-A3B's features at small sizes)."""
    return {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        **DIMS,
        "intermediate_size": 1408,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
        "router_aux_loss_coef": 0.001,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "use_sliding_window": False,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    }


def generated_contender(
    package: Any, args: Any, state: dict[str, Any], fused_output_loss: str = "auto"
) -> Contender:
    """The package's model on ``state``, trained as the runtime trains it."""
    from runtime.config import JobConfig
    from runtime.moe import LoadBalancer

    spec = package.get_train_spec()
    model = spec.model_cls(args)
    model.load_state_dict(state)
    model.train()
    job_config = JobConfig.from_dict({"training": {"fused_output_loss": fused_output_loss}})
    ce = runtime_loss(spec, model, job_config)
    balancer = LoadBalancer(job_config.moe, [model], args, dp_mesh=None)

    def loss(logits: Any, labels: Any) -> Any:
        return ce(logits, labels) + balancer.loss()

    optimizer = spec.build_optimizers_fn([model], job_config)
    return Contender(model, loss, optimizer)


def transformers_contender(folder: Path, experts: str) -> Contender:
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(
        folder, attn_implementation="sdpa", experts_implementation=experts, dtype=torch.float32
    )
    hf.config.output_router_logits = True
    hf.train()
    coef = hf.config.router_aux_loss_coef
    vocab = hf.config.vocab_size

    def forward(tokens: Any) -> Any:
        return hf(input_ids=tokens)

    def loss(outputs: Any, labels: Any) -> Any:
        ce = hf.loss_function(
            logits=outputs.logits, labels=None, vocab_size=vocab, shift_labels=labels
        )
        return ce + coef * outputs.aux_loss

    optimizer = torch.optim.AdamW(hf.parameters(), lr=8e-4, weight_decay=0.1, fused=True)
    return Contender(forward, loss, optimizer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per contender")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    options = parser.parse_args(argv)

    import torch

    from runtime.hf_io import save_hf_checkpoint

    if options.threads:
        torch.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory(prefix="bench-moe-") as tmp:
        package_dir = render_package(Path(tmp), bench_config(), PACKAGE)
        sys.path.insert(0, str(package_dir.parent))
        package = __import__(PACKAGE)
        args = package.ModelArgs.from_hf(bench_config())
        torch.manual_seed(0)
        reference = package.get_train_spec().model_cls(args)
        reference.init_weights()
        state = reference.state_dict()
        adapter = package.get_train_spec().state_dict_adapter(args, None)
        hf_folder = Path(tmp) / "hf"
        save_hf_checkpoint(adapter.to_hf(state), args.to_hf(), hf_folder)
        _, flops_per_token = args.get_nparams_and_flops(reference, SEQ)
        del reference

        contenders = {
            "generated": generated_contender(package, args, state),
            "generated, expert loop": generated_contender(
                package, dataclasses.replace(args, use_grouped_mm=False), state
            ),
            "generated, output projection in the loss": generated_contender(
                package, args, state, fused_output_loss="on"
            ),
            "transformers (eager experts)": transformers_contender(hf_folder, "eager"),
            "transformers (grouped_mm experts)": transformers_contender(hf_folder, "grouped_mm"),
        }
        generator = torch.Generator().manual_seed(1)
        tokens = torch.randint(0, args.vocab_size, (BATCH, SEQ), generator=generator)
        labels = torch.randint(0, args.vocab_size, (BATCH, SEQ), generator=generator)
        with torch.no_grad():
            parity = {
                name: contender.loss(tokens, labels).item()
                for name, contender in contenders.items()
            }
        peak_before = machine.matmul_peak()
        warmup_s = warm_up(contenders, options.warmup, tokens, labels)
        runs = {"matmul_peak": functools.partial(machine.matmul_peak, repeats=3)}
        runs.update(
            {
                name: functools.partial(contender.step, tokens, labels)
                for name, contender in contenders.items()
            }
        )
        samples = interleave(runs, options.repeats)
        peak = max(peak_before, *samples.pop("matmul_peak"))

    flops_per_step = flops_per_token * BATCH * SEQ
    results: dict[str, Any] = {
        "comparison": "moe_step",
        "dims": {**DIMS, "batch": BATCH, "seq_len": SEQ, "dtype": "float32"},
        "machine": machine.describe(),
        "torch_threads": torch.get_num_threads(),
        "matmul_peak_flops": peak,
        "flops_per_step": flops_per_step,
        "loss_parity": parity,
        "warmup_s": warmup_s,
    }
    results["contenders"] = summarize(samples, contenders, flops_per_step, peak)
    emit(results, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
