"""Every command in a generated README's training sections is real: `scaffold` lines parse with
the CLI's own parser, `torchrun` lines with torchrun's, and every `--section.key value` override
loads with the TOML or YAML it names and validates against the world size the line launches
(parallel degrees, expert parallelism, the flavor), as `scaffold train` checks before starting."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main
from torch.distributed.run import get_args_parser

from runtime.launch import build_argv, smoke_overrides, validate
from scaffolder.cli import app
from tests.helpers import family_config, render_config_package, tinyllama_config

# Lines of the training sections' code blocks that are not commands this project defines.
NOT_OURS = ("cp ", "primus-cli ", "pytest ", "SCAFFOLD_FULL_SIZE=", "#", "export ", "head_node=")
SLURM = {'"$SLURM_NNODES"': "2", '"$SLURM_JOB_ID"': "7", '"$head_node:29500"': "node0:29500"}


def training_commands(readme: str) -> list[str]:
    """The lines of the code blocks from '## Train' on."""
    text = readme[readme.index("\n## Train\n") :]
    blocks = re.findall(r"```\n(.*?)```", text, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def check_scaffold(args: list[str], package: Path) -> str:
    command = typer.main.get_command(app)
    name, *rest = args
    sub = command.get_command(command.make_context("scaffold", [name, "--help"]), name)
    extra = rest[rest.index("--") + 1 :] if "--" in rest else []
    options = rest[: rest.index("--")] if "--" in rest else rest
    params = sub.make_context(name, options).params  # raises on an unknown option
    if name != "train":
        return "scaffold"
    overrides = list(extra)
    if params["smoke"]:
        overrides = smoke_overrides(params["package"]) + overrides
    argv = build_argv(params["package"], params["config"], overrides)
    validate(argv, world_size=params["nproc"] * params["nnodes"])
    return "scaffold"


def check_torchrun(args: list[str]) -> str:
    parsed = get_args_parser().parse_args(args)
    assert parsed.module and parsed.training_script == "runtime.train"
    nodes = int(str(parsed.nnodes).split(":")[-1])
    validate(parsed.training_script_args, world_size=int(parsed.nproc_per_node) * nodes)
    return "torchrun"


def check_line(line: str, package: Path) -> str:
    if line.startswith("--"):  # a data override, after step 1 set a tokenizer
        overrides = shlex.split(line.split("#")[0]) + ["--training.tokenizer_path", package.name]
        config = f"{package.name}/train_configs/{package.name}.toml"
        validate(["--job.config_file", config, *overrides], world_size=8)
        return "override"
    if line.startswith("srun "):
        for variable, value in SLURM.items():
            line = line.replace(variable, value)
        line = line.removeprefix("srun ")
    words = shlex.split(line)
    if words[0] == "scaffold":
        return check_scaffold(words[1:], package)
    if words[0] == "torchrun":
        return check_torchrun(words[1:])
    assert line.startswith(NOT_OURS), f"a README command this test does not know: {line}"
    return "other"


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("tinyllama", tinyllama_config()),
        ("mixtral", family_config("mixtral")),  # expert parallelism on the 8-GPU line
        ("deepseek_v3", family_config("deepseek_v3")),
        ("gpt_oss", family_config("gpt_oss")),
    ],
)
def test_every_training_command_in_the_readme_is_real(
    name: str, config: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    render_config_package(tmp_path, name, config)
    package = tmp_path / name
    monkeypatch.chdir(tmp_path)  # "from the folder that holds this package"
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = training_commands((package / "README.md").read_text())
    kinds = [check_line(line, package) for line in lines]
    # scaffold train: debug, full size, several nodes, Primus smoke (no assets: a local config)
    assert kinds.count("scaffold") == 4 and "scaffold assets" not in "\n".join(lines)
    assert kinds.count("torchrun") == 3 and kinds.count("override") == 3
    readme = (package / "README.md").read_text()
    assert "## Train it for real" in readme
    if name != "tinyllama":
        assert "--parallelism.expert_parallel_degree 8" in readme


def test_a_hub_package_readme_names_scaffold_assets(tmp_path: Path, monkeypatch) -> None:
    from scaffolder.generate import generate
    from scaffolder.render import write_package

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    # Its own name: another test of this process may have imported the example's package.
    generated = generate("TinyLlama/TinyLlama-1.1B-Chat-v1.0", name="hub_tinyllama")
    write_package(generated.files, tmp_path / generated.package_name)
    package = tmp_path / generated.package_name
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = training_commands((package / "README.md").read_text())
    kinds = [check_line(line, package) for line in lines]
    assert f"scaffold assets {package.name} --weights" in lines
    assert kinds.count("scaffold") == 1 + 4
