"""The CLI's own text: `scaffold families` wraps at the terminal and never cuts a feature,
boolean options read as flags, `train --help` shows the override pattern, and the command list
gives each command a whole sentence."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from scaffolder.families import RECIPES


def scaffold(*args: str, columns: int = 80) -> str:
    env = dict(os.environ, COLUMNS=str(columns), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-m", "scaffolder", *args], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_families_wrap_at_the_terminal_and_keep_every_feature_whole() -> None:
    output = scaffold("families", columns=60)
    assert max(len(line) for line in output.splitlines()) <= 60
    flat = " ".join(output.split())
    for model_type, recipe in RECIPES.items():
        assert f"{model_type} {' '.join(recipe.description.split())}" in flat
        for feature in recipe.summary:
            assert " ".join(feature.split()) in flat, (model_type, feature)


def test_boolean_options_read_as_flags() -> None:
    for command, flags in {
        "new-model": ("--force", "--verify / --no-verify"),
        "assets": ("--weights",),
        "train": ("--smoke",),
    }.items():
        text = scaffold(command, "--help", columns=100)
        assert "<bool>" not in text and "BOOLEAN" not in text, text
        for flag in flags:
            assert re.search(rf"^  {re.escape(flag)}  ", text, flags=re.M), (flag, text)


def test_train_help_shows_the_override_pattern() -> None:
    text = scaffold("train", "--help", columns=100)
    assert "scaffold train PKG --nproc 2 -- --training.steps 20" in text
    assert "--section.key value" in text


def test_the_command_list_has_whole_sentences() -> None:
    text = scaffold("--help", columns=80)
    commands = text[text.index("Commands:") :].splitlines()[1:]
    assert {line.split()[0] for line in commands if line.strip()} == {
        "new-model",
        "verify",
        "families",
        "regenerate",
        "assets",
        "train",
    }
    for line in commands:
        if line.strip():
            assert not line.rstrip().endswith("...") and line.rstrip()[-1] in ".)", line
