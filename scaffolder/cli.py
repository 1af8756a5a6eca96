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

app = typer.Typer(
    name="scaffold",
    help="Onboard a Hugging Face decoder model into a PyTorch-native training stack, "
    "verified against transformers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


@app.command("new-model")
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
) -> None:
    """Render a model package from SOURCE's config.json and say how to verify it."""
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
    console.print(
        f"[bold]model[/]    {shown(spec.model_type)} ({shown(spec.hf_architecture)}), "
        f"{spec.size_name} parameters: "
        f"{spec.n_layers} layers, hidden {spec.dim}, {spec.n_heads} heads / "
        f"{spec.n_kv_heads} kv heads, head_dim {spec.head_dim}, {shown(positions)}"
    )
    for warning in generated.warnings:
        console.print(f"[bold yellow]warning[/]  {shown(warning)}")
    for folder in stale:
        console.print(f"[bold]removed[/]  {shown(folder)}, left by an interrupted scaffold run")
    console.print(
        f"[bold green]wrote[/]    {len(generated.files)} files (+ .scaffold/ record) "
        f"to {shown(destination)} in {elapsed:.1f}s"
    )
    console.print(f"[bold]next[/]     cd {shown(output)} && pytest {generated.package_name}")


@app.command("families")
def families() -> None:
    """List the supported model families (config.json model_type) and their features."""
    from scaffolder.families import RECIPES

    for model_type, recipe in sorted(RECIPES.items()):
        console.print(f"[bold]{model_type}[/]  {recipe.description}", highlight=False)
        console.print(f"    features: {', '.join(recipe.summary)}", highlight=False)


@app.command("regenerate")
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
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
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
    launch = run_torchtitan if engine == "torchtitan" else run_train
    raise typer.Exit(code=launch(package, nproc, config, extra, nnodes, rdzv_endpoint))
