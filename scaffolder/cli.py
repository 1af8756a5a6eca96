"""The ``scaffold`` command line: the only module that prints, knows typer/rich and exit codes.

The generator modules return data and raise :class:`~scaffolder.errors.ScaffoldError` for bad
input; the commands here print their results and turn errors into one line and an exit code.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from scaffolder import __version__
from scaffolder.errors import ScaffoldError

EXIT_OK = 0
EXIT_CHANGES = 1  # regenerate: conflicts were written, or (--check) something would change
EXIT_BAD_INPUT = 2  # a ScaffoldError: one line, nothing written
EXIT_MISMATCH = 1  # verify: the package disagrees with transformers (or its tests broke)

app = typer.Typer(
    name="scaffold",
    help="Onboard a Hugging Face decoder model into a PyTorch-native training stack, "
    "verified against transformers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: flags read as flags (`--force`, not typer's `--force <bool>`), and
    # epilogs keep their `\b` blocks (train's override pattern).
    rich_markup_mode=None,
)
console = Console(stderr=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def shown(value: object) -> str:
    """User-supplied text (config values, paths, messages that quote them) as rich prints it
    literally: markup escaped, control characters (newlines, terminal escapes) as ``\\x..``."""
    text = str(value)
    if not text.isprintable():
        text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return escape(text)


def fail(error: ScaffoldError) -> None:
    """Print a bad-input error as one line and exit 2."""
    err_console.print(f"[bold red]error:[/] {shown(error)}", soft_wrap=True)
    raise typer.Exit(code=EXIT_BAD_INPUT)


def version_callback(value: bool) -> None:
    if value:
        console.print(f"scaffold {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    """scaffold: config.json in, verified training package out."""


@app.command("new-model", short_help="Render a model package from a config.json, verified.")
def new_model(
    source: Annotated[
        str,
        typer.Argument(
            help="Hub repo id (org/name), a local config.json (any file name), or a model folder."
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="Package name (a Python identifier). Default: from SOURCE."),
    ] = None,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder to create the package in."),
    ] = Path("."),
    revision: Annotated[
        str | None,
        typer.Option("--revision", help="Hub revision: branch, tag or commit hash."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing package that scaffold wrote (never a link, a file, or a "
            "folder holding files of yours).",
        ),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Then compare the package with transformers (scaffold verify; seconds).",
        ),
    ] = True,
) -> None:
    """Render a model package from SOURCE's config.json, then verify it against transformers."""
    from scaffolder.generate import generate
    from scaffolder.render import write_package

    started = time.perf_counter()
    try:
        with console.status("Resolving config and rendering package..."):
            generated = generate(source, name=name, revision=revision)
            destination = output / generated.package_name
            # Regeneration record (.scaffold/): see scaffolder/record.py and issue 4.
            files = generated.files_with_record(destination)
            stale = write_package(files, destination, force=force)
    except ScaffoldError as error:
        fail(error)
    except OSError as error:  # rendering needs a temporary folder: nothing was written
        fail(ScaffoldError(f"could not render the package ({error}); nothing was written"))
    spec, resolved = generated.spec, generated.resolved
    elapsed = time.perf_counter() - started
    console.print(f"[bold]source[/]   {shown(resolved.description)}")
    console.print(f"[bold]sha256[/]   {resolved.sha256}")
    positions = f"rope {spec.rope.type}" if spec.rope else "learned positions"
    latent = spec.features.latent_attention
    heads = (
        f"{spec.n_heads} heads / {spec.n_kv_heads} kv heads, head_dim {spec.head_dim}"
        if latent is None
        else f"{spec.n_heads} latent-attention heads (kv_lora_rank {latent.kv_lora_rank})"
    )
    console.print(
        f"[bold]model[/]    {shown(spec.model_type)} ({shown(spec.hf_architecture)}), "
        f"{spec.size_name} parameters: "
        f"{spec.n_layers} layers, hidden {spec.dim}, {heads}, {shown(positions)}"
    )
    for warning in generated.warnings:
        console.print(f"[bold yellow]warning[/]  {shown(warning)}")
    for folder in stale:
        console.print(f"[bold]removed[/]  {shown(folder)}, left by an interrupted scaffold run")
    console.print(
        f"[bold green]wrote[/]    {len(generated.files)} files (+ .scaffold/ record) "
        f"to {shown(destination)} in {elapsed:.1f}s"
    )
    if verify:
        code = run_verification(destination)
        if code != EXIT_OK:
            raise typer.Exit(code=code)
        console.print(
            f"[bold]next[/]     scaffold train {shown(destination)}   "
            f"(more: {shown(destination / 'README.md')})"
        )
    else:
        console.print(f"[bold]next[/]     scaffold verify {shown(destination)}")


def run_verification(package: Path) -> int:
    """Run ``scaffold verify`` on ``package``: progress, a table, the failures; the exit code."""
    from rich.table import Table

    from scaffolder.verify import rows
    from scaffolder.verify import verify as run

    with console.status("verifying against transformers: starting pytest...") as status:

        def on_start(index: int, total: int, nodeid: str) -> None:
            from scaffolder.verify import describe

            section, name = describe(nodeid)
            status.update(f"verifying against transformers: [{index}/{total}] {section}: {name}")

        try:
            result = run(package, on_start)
        except ScaffoldError as error:
            fail(error)
    table = Table(title=f"{shown(result.package.name)} against transformers", title_justify="left")
    table.add_column("part")
    table.add_column("check")
    table.add_column("result")
    table.add_column("time", justify="right")
    marks = {
        "passed": "[green]ok[/]",
        "skipped": "[yellow]skipped[/]",
        "failed": "[bold red]MISMATCH[/]",
        "error": "[bold red]ERROR[/]",
    }
    for row in rows(result.checks):
        name = shown(row.name) + (f" ({row.count})" if row.count > 1 else "")
        mark = marks.get(row.outcome, shown(row.outcome))
        table.add_row(row.section, name, mark, f"{row.seconds:.1f}s")
    if result.checks:
        console.print(table)
    for check in result.failed:
        console.print(f"[bold red]{check.outcome}[/]  {check.section}: {shown(check.name)}")
        console.print(f"    {shown(check.message)}")
    if result.ok:
        console.print(
            f"[bold green]verified[/] {len(result.checks)} checks against transformers "
            f"in {result.seconds:.1f}s"
        )
        return EXIT_OK
    if not result.checks:
        for line in result.output.rstrip().splitlines():
            console.print(shown(line))
        console.print(
            f"[bold red]verify failed[/]: the package's tests did not run "
            f"(pytest exit {result.returncode}); see the output above"
        )
    else:
        console.print(
            f"[bold red]verify failed[/]: {len(result.failed)} of {len(result.checks)} checks "
            f"disagree with transformers ({result.seconds:.1f}s); "
            f"details: pytest {shown(result.package)}/tests"
        )
    return EXIT_MISMATCH


@app.command(
    "verify",
    short_help="Compare a package with transformers.",
    help="Compare PACKAGE with transformers: logits, loss, gradients, adapter round trips "
    "through save_pretrained files, full-size parameter count (the package's own tests, in a "
    "pytest subprocess). Exit 1 on a mismatch.",
)
def verify_command(
    package: Annotated[Path, typer.Argument(help="A generated package folder.")],
) -> None:
    raise typer.Exit(code=run_verification(package))


@app.command("families", short_help="List the supported model families.")
def families() -> None:
    """List the supported model families (config.json model_type) and their features."""
    import textwrap

    from scaffolder.families import RECIPES

    width = max(console.width, 60)
    for model_type, recipe in sorted(RECIPES.items()):
        # Wrapped at the terminal's width between words, never cut.
        wrap = {"width": width, "break_long_words": False, "break_on_hyphens": False}
        head = textwrap.wrap(
            f"{model_type}  {recipe.description}", subsequent_indent="    ", **wrap
        )
        console.print(f"[bold]{model_type}[/]" + escape(head[0][len(model_type) :]))
        for line in head[1:]:
            console.print(escape(line))
        features = "features: " + ", ".join(recipe.summary)
        for line in textwrap.wrap(
            features, initial_indent="    ", subsequent_indent="      ", **wrap
        ):
            console.print(escape(line))


@app.command("regenerate", short_help="Re-render a package, keeping hand edits.")
def regenerate(
    package: Annotated[Path, typer.Argument(help="The generated package folder.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="Regenerate from this config.json instead of the recorded source."
        ),
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Hub revision to resolve the recorded repo at.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print a unified diff; write nothing.")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when regenerating would change anything.")
    ] = False,
) -> None:
    """Apply a changed config.json (or a newer generator) to PACKAGE, keeping every hand edit."""
    from scaffolder import regenerate as regen

    try:
        # One writer at a time on a package (readers share): see scaffolder/staging.py.
        with regen.locked(package, shared=check or dry_run):
            plan = regen.plan_regeneration(package, config, revision)
            for line in regen.summary_lines(plan):
                typer.echo(line)
            if dry_run:
                typer.echo(regen.unified_diff(plan), nl=False)
            if check:
                lines = regen.check_lines(plan)
                code = EXIT_CHANGES if plan.changes_anything else EXIT_OK
            else:
                stale = [] if dry_run else regen.remove_stale(package)
                if not dry_run and plan.changes_anything:
                    regen.apply_plan(plan)
                lines = regen.stale_lines(stale) + regen.result_lines(plan, dry_run=dry_run)
                code = EXIT_CHANGES if plan.conflicted else EXIT_OK
    except ScaffoldError as error:
        fail(error)
    except OSError as error:  # the staged copy could not be written: nothing was swapped in
        fail(ScaffoldError(f"could not write {package} ({error}); the package is unchanged"))
    for line in lines:
        typer.echo(line)
    raise typer.Exit(code=code)


@app.command(
    "assets",
    short_help="Fetch tokenizer and weights; point the TOMLs at them.",
    help="Fetch PACKAGE's tokenizer (and weights) into PACKAGE/assets through the Hugging Face "
    "cache (HF_HUB_OFFLINE=1: cached files only) and point its full-size TOMLs at them.",
)
def assets(
    package: Annotated[Path, typer.Argument(help="A generated package folder.")],
    weights: Annotated[
        bool,
        typer.Option(
            "--weights",
            help="Also fetch the safetensors checkpoint and start training from it "
            "(checkpoint.initial_load_path, initial_load_in_hf).",
        ),
    ] = False,
    revision: Annotated[
        str | None,
        typer.Option("--revision", help="Hub revision (default: the one the package records)."),
    ] = None,
) -> None:
    from scaffolder.assets import fetch_assets

    try:
        with console.status("Fetching assets through the Hugging Face cache..."):
            result = fetch_assets(package, weights=weights, revision=revision)
    except ScaffoldError as error:
        fail(error)
    except OSError as error:
        fail(ScaffoldError(f"could not write {package}/assets ({error})"))
    console.print(f"[bold]source[/]   {shown(result.repo_id)} at {shown(result.revision)}")
    for name in result.files:
        how = " (link into the HF cache)" if name in result.linked else ""
        console.print(f"[bold green]wrote[/]    {shown(result.folder / name)}{how}")
    for path, changed in result.configs.items():
        state = "updated" if changed else "already set"
        console.print(f"[bold]config[/]   {shown(path)} {state}")
    if not result.configs:
        console.print("[bold yellow]warning[/]  no full-size TOML in train_configs/ to point")


TRAIN_EPILOG = """Override any config key after `--`:

\b
  scaffold train PKG --nproc 2 -- --training.steps 20 --parallelism.tensor_parallel_degree 2
  scaffold train PKG --config PKG.toml -- --training.dataset text --training.dataset_path corpus/
  scaffold train PKG --config megatron/exp_pretrain.yaml --smoke --nproc 2

Keys are `--section.key value` (a bare `--section.key` sets a boolean true), the same as
`torchrun ... -m runtime.train --job.config_file FILE --section.key value`; docs/runtime.md
lists every section and key."""


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    short_help="Train a package with torchrun (overrides after --).",
    epilog=TRAIN_EPILOG,
)
def train(
    ctx: typer.Context,
    package: Annotated[str, typer.Argument(help="A generated package folder, or its import name.")],
    nproc: Annotated[int, typer.Option("--nproc", help="Processes (ranks) on this node.")] = 1,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="TOML/YAML path, or a file name in <package>/train_configs "
            "(default debug_model.toml).",
        ),
    ] = None,
    nnodes: Annotated[int, typer.Option("--nnodes", help="Nodes (torchrun agents).")] = 1,
    rdzv_endpoint: Annotated[
        str | None,
        typer.Option("--rdzv-endpoint", help="host:port of the c10d rendezvous (multi-node)."),
    ] = None,
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke",
            help="Shrink the config to the debug run (debugmodel flavor, debug_model.toml's "
            "seq_len, steps and batch): e.g. --config megatron/exp_pretrain.yaml --smoke.",
        ),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="runtime (this project's trainer) or torchtitan (torchtitan 0.3.0's own "
            "trainer through the package's config_registry.py; needs the torchtitan extra).",
        ),
    ] = "runtime",
) -> None:
    """Train PACKAGE with torchrun; extra `--section.key value` pairs override the config."""
    from runtime.launch import run_torchtitan, run_train

    extra = [arg for arg in ctx.args if arg != "--"]
    if engine not in ("runtime", "torchtitan"):
        typer.echo(f"error: --engine must be runtime or torchtitan, got {engine!r}", err=True)
        raise typer.Exit(code=2)
    if engine == "torchtitan":
        if smoke:
            typer.echo("error: --smoke is for --engine runtime (Primus YAML or TOML)", err=True)
            raise typer.Exit(code=2)
        raise typer.Exit(code=run_torchtitan(package, nproc, config, extra, nnodes, rdzv_endpoint))
    code = run_train(package, nproc, config, extra, nnodes, rdzv_endpoint, smoke=smoke)
    raise typer.Exit(code=code)
