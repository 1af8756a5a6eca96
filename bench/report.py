"""The generated part of docs/benchmarks.md, from the JSON files the comparisons write."""

from __future__ import annotations

from typing import Any

from bench.stats import Summary, fmt_seconds, fmt_spread, markdown_table, speedup

STEP_ORDER = ("generated", "transformers", "torchtitan")


def _summary(entry: dict[str, Any]) -> Summary:
    return Summary(int(entry["n"]), entry["median"], entry["min"], entry["max"])


def machine_section(machine: dict[str, Any], torchtitan: str | None, date: str) -> str:
    lines = [
        f"Measured {date} on {machine['cores']} CPU cores ({machine['cpu']}), "
        f"{machine['memory_gib']} GiB, Python {machine['python']}, torch {machine['torch']}, "
        f"transformers {machine['transformers']}, torchtitan {torchtitan or 'not installed'}. "
        "Other jobs share this machine: each section gives the load average when it started, "
        "and the min–max columns show how noisy it was.",
    ]
    return "\n".join(lines)


def step_section(
    eager: dict[str, Any] | None,
    compiled: dict[str, Any] | None,
    eager_1t: dict[str, Any] | None = None,
    eager_heap: dict[str, Any] | None = None,
) -> str:
    """Table of comparison 1: one row per (mode, contender)."""
    modes = [
        ("eager", eager),
        ("eager, 1 thread", eager_1t),
        ("eager, freed memory kept", eager_heap),
        ("torch.compile", compiled),
    ]
    optional = ("1 thread", "freed memory kept")
    modes = [
        (mode, result)
        for mode, result in modes
        if result is not None or not any(word in mode for word in optional)
    ]
    header = [
        "mode",
        "model",
        "step (median)",
        "min – max",
        "runs",
        "generated is faster by",
        "MFU",
        "CPU time/step",
        "faster by (CPU time)",
    ]
    rows: list[list[object]] = []
    notes: list[str] = []
    for mode, result in modes:
        if result is None:
            notes.append(f"- {mode}: not run.")
            continue
        entries = result["contenders"]
        base = _summary(entries["generated"]) if "generated" in entries else None
        for name in STEP_ORDER:
            if name not in entries:
                continue
            summary = _summary(entries[name])
            ratio = "—" if name == "generated" or base is None else f"{speedup(summary, base):.2f}×"
            cpu_ratio = "—"
            if name != "generated" and base is not None and "cpu_median" in entries[name]:
                cpu = entries[name]["cpu_median"] / entries["generated"]["cpu_median"]
                cpu_ratio = f"{cpu:.2f}×"
            rows.append(
                [
                    mode,
                    name,
                    fmt_seconds(summary.median),
                    fmt_spread(summary),
                    summary.n,
                    ratio,
                    f"{100 * entries[name]['mfu']:.1f}%",
                    fmt_seconds(entries[name]["cpu_median"])
                    if "cpu_median" in entries[name]
                    else "—",
                    cpu_ratio,
                ]
            )
        for name, reason in result.get("skipped", {}).items():
            rows.append([mode, name, "skipped", reason, 0, "—", "—", "—", "—"])
        peak = result["matmul_peak_flops"] / 1e9
        parity = result.get("loss_parity") or {}
        parity_text = (
            f"; loss of the generated model vs transformers on the same weights and batch: "
            f"{parity['generated']:.6f} vs {parity['transformers']:.6f}"
            if parity
            else ""
        )
        warm = ", ".join(f"{k} {v:.0f} s" for k, v in result.get("warmup_s", {}).items())
        load = ", ".join(map(str, result["machine"]["load_average"]))
        notes.append(
            f"- {mode} (load average at start {load}): fp32 matmul peak measured in the same run "
            f"{peak:.1f} GFLOP/s; "
            f"{result['flops_per_step'] / 1e9:.1f} GFLOP per step (the package's "
            f"`get_nparams_and_flops`, same for all three){parity_text}; warm-up steps "
            f"(including compilation) took {warm}."
        )
    return markdown_table(header, rows) + "\n\n" + "\n".join(notes)


def _load(result: dict[str, Any]) -> str:
    return "Load average at start: " + ", ".join(map(str, result["machine"]["load_average"])) + "."


def runtime_section(result: dict[str, Any] | None) -> str:
    if result is None:
        return "Not run."
    header = [
        "ranks",
        "tokens/s (median)",
        "min – max",
        "MFU",
        "step time",
        "peak RSS rank 0",
        "command",
    ]
    rows = []
    for ranks, run in sorted(result["runs"].items(), key=lambda item: int(item[0])):
        if "error" in run:
            rows.append(
                [
                    ranks,
                    "failed",
                    run["error"].splitlines()[-1][:120],
                    "—",
                    "—",
                    "—",
                    f"`{run['command']}`",
                ]
            )
            continue
        rows.append(
            [
                ranks,
                f"{run['tokens_per_sec']:.0f}",
                f"{run['tokens_per_sec_min']:.0f} – {run['tokens_per_sec_max']:.0f}",
                f"{100 * run['mfu']:.1f}%",
                fmt_seconds(run["step_time_s"]),
                f"{run['memory_gib_rank0']:.2f} GiB",
                f"`{run['command']}`",
            ]
        )
    return markdown_table(header, rows) + "\n\n" + _load(result)


def scaffold_section(result: dict[str, Any] | None) -> str:
    if result is None:
        return "Not run."
    header = ["what", "wall (median)", "min – max", "runs", "peak RSS"]
    rows = []
    for name, entry in result["new_model"].items():
        summary = _summary(entry)
        rss = result.get("new_model_max_rss_mib", {}).get(name)
        rows.append(
            [
                f"`scaffold new-model`, {name}",
                fmt_seconds(summary.median),
                fmt_spread(summary),
                summary.n,
                f"{rss:.0f} MiB" if rss else "—",
            ]
        )
    tests = _summary(result["tests"])
    rows.append(
        [
            f"generated TinyLlama tests ({result['tests']['pytest']})",
            fmt_seconds(tests.median),
            fmt_spread(tests),
            tests.n,
            "—",
        ]
    )
    commands = (
        f"Commands: `{result['new_model_command']}`; `{result['tests_command']}`. Cold cache: an "
        "empty `SCAFFOLD_CACHE_DIR` for each run, so the config goes through transformers' config "
        "class and every template is compiled; warm: the normalized config and the compiled "
        "templates come from the caches an earlier run wrote (`scaffolder/cache.py`)."
    )
    return markdown_table(header, rows) + "\n\n" + commands + " " + _load(result)


def memory_section(result: dict[str, Any] | None) -> str:
    if result is None:
        return "Not run."
    header = [
        "ranks",
        "params/rank",
        "grads/rank",
        "AdamW state/rank",
        "total/rank",
        "vs 1 rank",
        "peak RSS/rank (max)",
        "RSS growth/rank (max)",
    ]
    rows = []
    one = None
    for ranks, run in sorted(result["runs"].items(), key=lambda item: int(item[0])):
        if "error" in run:
            rows.append([ranks, "failed", run["error"].splitlines()[-1][:100], "", "", "", "", ""])
            continue
        per_rank = run["ranks"]

        def worst(key: str, per_rank: list = per_rank) -> float:
            return max(rank[key] for rank in per_rank)

        total = worst("state_mib")
        one = total if one is None and ranks == "1" else one
        rows.append(
            [
                ranks,
                f"{worst('params_mib'):.1f} MiB",
                f"{worst('grads_mib'):.1f} MiB",
                f"{worst('optimizer_mib'):.1f} MiB",
                f"{total:.1f} MiB",
                f"{total / one:.2f}" if one else "—",
                f"{worst('peak_rss_mib'):.0f} MiB",
                f"{worst('peak_rss_growth_mib'):.0f} MiB",
            ]
        )
    return markdown_table(header, rows) + f"\n\nCommand: `{result['command']}`. " + _load(result)


def hf_io_section(result: dict[str, Any] | None) -> str:
    """Comparison 6: peak RSS per rank of the HF import and export (worst rank of each run)."""
    if result is None:
        return "Not run."
    header = ["ranks", "model shard/rank", "phase", "peak RSS/rank", "vs 1 rank", "growth/rank"]
    header.append("vs 1 rank")
    rows = []
    one: dict[str, tuple[float, float]] = {}
    for ranks, run in sorted(result["runs"].items(), key=lambda item: int(item[0])):
        if "error" in run:
            rows.append([ranks, "failed", run["error"].splitlines()[-1][:100], "", "", "", ""])
            continue
        for phase in ("import", "export"):
            peak = max(rank[f"{phase}_peak_rss_mib"] for rank in run["ranks"])
            growth = max(rank[f"{phase}_growth_mib"] for rank in run["ranks"])
            if ranks == "1":
                one[phase] = (peak, growth)
            base = one.get(phase)
            rows.append(
                [
                    ranks,
                    f"{max(rank['local_params_mib'] for rank in run['ranks']):.0f} MiB",
                    phase,
                    f"{peak:.0f} MiB",
                    f"{peak / base[0]:.2f}" if base else "—",
                    f"{growth:.0f} MiB",
                    f"{growth / base[1]:.2f}" if base else "—",
                ]
            )
    return markdown_table(header, rows) + f"\n\nCommand: `{result['command']}`. " + _load(result)


MOE_ORDER = (
    "generated",
    "generated, expert loop",
    "generated, output projection in the loss",
    "transformers (eager experts)",
    "transformers (grouped_mm experts)",
)


def moe_section(runs: dict[str, dict[str, Any] | None]) -> str:
    """Table of comparison 5: one row per (threads, contender), ratios against generated."""
    header = ["threads", "model", "step (median)", "min – max", "runs", "generated is faster by"]
    header += ["MFU", "CPU time/step", "faster by (CPU time)"]
    rows: list[list[object]] = []
    notes: list[str] = []
    for label, result in runs.items():
        if result is None:
            notes.append(f"- {label}: not run.")
            continue
        entries = result["contenders"]
        base = _summary(entries["generated"])
        for name in MOE_ORDER:
            if name not in entries:
                continue
            summary = _summary(entries[name])
            first = name == "generated"
            cpu = entries[name]["cpu_median"] / entries["generated"]["cpu_median"]
            rows.append(
                [
                    label,
                    name,
                    fmt_seconds(summary.median),
                    fmt_spread(summary),
                    summary.n,
                    "—" if first else f"{speedup(summary, base):.2f}×",
                    f"{100 * entries[name]['mfu']:.1f}%",
                    fmt_seconds(entries[name]["cpu_median"]),
                    "—" if first else f"{cpu:.2f}×",
                ]
            )
        losses = ", ".join(f"{name} {loss:.6f}" for name, loss in result["loss_parity"].items())
        load = ", ".join(map(str, result["machine"]["load_average"]))
        notes.append(
            f"- {label} (load average at start {load}): fp32 matmul peak "
            f"{result['matmul_peak_flops'] / 1e9:.1f} GFLOP/s; "
            f"{result['flops_per_step'] / 1e9:.1f} GFLOP per step (active parameters); "
            f"loss (cross-entropy plus the weighted load-balancing loss) on the same weights and "
            f"batch: {losses}."
        )
    return markdown_table(header, rows) + "\n\n" + "\n".join(notes)


def step_memory_section(result: dict[str, Any] | None) -> str:
    """Table of comparison 6: one row per (vocabulary, contender), ratios against transformers."""
    if result is None:
        return "Not run."
    header = ["vocab", "model", "step peak", "vs transformers", "total peak", "vs transformers"]
    header += ["step time (median)"]
    rows: list[list[object]] = []
    for vocab, entries in result["vocab"].items():
        anchor = entries.get("transformers", {})
        for name, entry in entries.items():
            if "skipped" in entry:
                rows.append([vocab, name, "skipped: " + entry["skipped"][:80], "", "", "", ""])
                continue

            def ratio(key: str, entry: dict[str, Any] = entry, anchor: dict = anchor) -> str:
                return f"{entry[key] / anchor[key]:.2f}×" if key in anchor else "—"

            rows.append(
                [
                    vocab,
                    name,
                    f"{entry['step_peak_mib']:.0f} MiB",
                    ratio("step_peak_mib"),
                    f"{entry['total_peak_mib']:.0f} MiB",
                    ratio("total_peak_mib"),
                    fmt_seconds(entry["step_s"]),
                ]
            )
    command = f"`python -m bench.step_memory --steps {result['steps']}`"
    return markdown_table(header, rows) + f"\n\nCommand: {command}. " + _load(result)


def render(results: dict[str, dict[str, Any] | None], date: str, command: str) -> str:
    """The whole generated block of docs/benchmarks.md."""
    machine = next(r["machine"] for r in results.values() if r is not None)
    eager, compiled = results.get("step_eager"), results.get("step_compile")
    torchtitan = next(
        (r.get("torchtitan") for r in (eager, compiled) if r and r.get("torchtitan")), None
    )
    parts = [
        "## Latest `make bench`",
        "",
        f"Command: `{command}` (each comparison runs in its own process, contenders interleaved "
        "A B C A B C, medians; ratios are median over median).",
        "",
        machine_section(machine, torchtitan, date),
        "",
        "### 1. Training step: generated model vs transformers vs torchtitan (CPU, fp32)",
        "",
        "hidden 512, 8 heads / 1 kv head, ffn 1408, 4 layers, vocab 32000, batch 4 × 256 tokens; "
        "forward, cross-entropy, backward, AdamW. MFU = model FLOPs / (median step time × the "
        "fp32 `torch.mm` peak measured in the same process, best of all rounds). CPU time/step "
        "is the process's CPU seconds per step (median); with one thread (`--threads 1`) it "
        "hardly moves when other jobs share the cores, so on a busy machine read the speedup "
        "from the 1-thread CPU-time column. Command: `python -m bench.step [--compile] "
        '[--threads 1] [--keep-freed-memory]`. "Freed memory kept" raises glibc\'s mmap and '
        "trim thresholds to 1 GiB in the benchmark process (all contenders), so the buffers "
        "each step frees and allocates again (logits, their gradient, embedding and output "
        "gradients, each over glibc's 32 MiB mmap ceiling) are not page-faulted in afresh: "
        "what remains of the ratios once allocator effects are gone.",
        "",
        step_section(eager, compiled, results.get("step_eager_1t"), results.get("step_eager_heap")),
        "",
        "### 2. Runtime: TinyLlama debug flavor, tokens/s and MFU",
        "",
        "The trainer's own metrics (`metrics.jsonl`), medians over the steps after the first two; "
        "tokens/s for the whole job, MFU per rank against the trainer's measured matmul peak. "
        "Command: `python -m bench.runtime_run`.",
        "",
        runtime_section(results.get("runtime")),
        "",
        "### 3. `scaffold new-model` and the generated test suite",
        "",
        scaffold_section(results.get("scaffold")),
        "",
        "### 4. Memory per rank under FSDP2 (44M-parameter benchmark llama, CPU/gloo)",
        "",
        "Exact bytes of the local shards each rank holds (parameters, gradients, AdamW "
        "exp_avg/exp_avg_sq), and the rank's peak RSS. 1 rank runs unsharded (FSDP needs > 1).",
        "",
        memory_section(results.get("memory")),
        "",
        "### 5. Mixture-of-experts training step: generated vs transformers (CPU, fp32)",
        "",
        "Qwen3-MoE-shaped: hidden 512, 8 heads / 2 kv heads, 8 experts of 384 hidden units, "
        "top-2 renormalized, 4 layers, vocab 32000, batch 4 × 256 tokens; forward, "
        "cross-entropy plus 0.001 × the load-balancing loss, backward, AdamW. transformers' "
        "Qwen3MoeForCausalLM loads the generated model's exported weights; its experts run with "
        "the implementation named. The expert loop is the generated model with "
        "`use_grouped_mm` off: what `torch._grouped_mm` buys. Command: "
        "`python -m bench.moe_step [--threads 1]`.",
        "",
        moe_section(
            {"2": results.get("moe_step"), "1": results.get("moe_step_1t")},
        ),
        "",
        "### 6. Peak memory of a training step by vocabulary size (CPU, fp32)",
        "",
        "The benchmark llama of comparison 1 at vocabulary 32000 and at Qwen's 151936, batch "
        "4 × 256 tokens, each contender alone in a fresh process. Step peak: the rise of the "
        "peak resident set during a step once AdamW's state exists (gradients, activations, "
        "the loss's buffers); total peak: the same from before the first step (plus AdamW's "
        "state). The first generated row runs its output projection inside the loss "
        '(`training.fused_output_loss = "on"`), the second computes full logits first '
        '(`"off"`); the runtime\'s default, `"auto"`, fuses from 4 × 2^24 logits per '
        "micro-batch: the first row at vocabulary 151936, the second at 32000.",
        "",
        step_memory_section(results.get("step_memory")),
        "",
        "### 7. Hugging Face checkpoint import and export: peak memory per rank (CPU/gloo)",
        "",
        "TinyLlama 1.1B (the committed package's `1.1B` flavor), fp32, random weights written as "
        "a transformers folder; FSDP2 over all ranks; `runtime.hf.import_hf` then "
        "`runtime.hf.export_hf`. Peak RSS of the worst rank during each phase (VmHWM, reset "
        "before it), and its growth over the RSS before the phase.",
        "",
        hf_io_section(results.get("hf_io_memory")),
    ]
    return "\n".join(parts)
