"""The literal and prose filters templates use (scaffolder.render)."""

from __future__ import annotations

import pytest

from scaffolder.errors import ScaffoldError
from scaffolder.literals import Name, comment, ordinal, prose, py_literal, yaml_literal


def test_prose_wraps_sentences_into_paragraphs() -> None:
    text = (
        "First sentence of the first paragraph.\n"
        "Second sentence, long enough that the joined paragraph must wrap at the width.\n"
        "\n"
        "Second paragraph.\n"
        "- a list item stays a line\n"
        "| a | table row |\n"
        "Text after them.\n"
    )
    out = prose(text, indent=4, width=60, first_indent=0)
    lines = out.splitlines()
    assert lines[0] == "First sentence of the first paragraph. Second sentence,"
    assert all(len(line) <= 60 for line in lines)
    assert all(line.startswith("    ") for line in lines[1:] if line)
    assert lines.count("") == 1  # one blank line between the two paragraphs
    assert "    - a list item stays a line" in lines  # short items stay one line
    assert "    | a | table row |" in lines
    assert lines[-1] == "    Text after them."


def test_prose_keeps_long_words_whole() -> None:
    word = "x" * 80
    assert prose(f"see {word} here", width=40) == f"see\n{word}\nhere"


def test_literals_refuse_what_they_cannot_render() -> None:
    assert py_literal((1.5,)) == "(1.5,)"
    assert yaml_literal(1e-05) == "1.0e-05"
    assert yaml_literal([15, 0]) == "[15, 0]"
    with pytest.raises(ScaffoldError):
        py_literal(float("nan"))
    with pytest.raises(ScaffoldError):
        py_literal({"a": 1})


def test_comment_wraps_with_a_lead() -> None:
    out = comment("word " * 30, width=40, lead="NOTE: ")
    lines = out.splitlines()
    assert lines[0].startswith("# NOTE: word")
    assert all(line.startswith("# ") and len(line) <= 40 for line in lines)


def test_ordinals_and_bare_names() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 102)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "102nd",
    ]
    assert yaml_literal(Name("RMSNorm")) == "RMSNorm"
    assert yaml_literal("RMSNorm") == '"RMSNorm"'
    for bad in ("no", "a b", "x: y", "1x"):
        with pytest.raises(ScaffoldError):
            Name(bad)


def test_prose_wraps_list_items_with_a_hanging_indent() -> None:
    out = prose("- " + "word " * 20 + "\n- second", width=30)
    lines = out.splitlines()
    assert lines[0].startswith("- word") and lines[1].startswith("  word")
    assert lines[-1] == "- second"


def test_prose_never_breaks_inside_a_code_literal() -> None:
    text = "The rows are ``[heads * 3 * head_dim, dim]`` along the output features."
    for width in range(20, 60):
        lines = prose(text, width=width).splitlines()
        assert any("``[heads * 3 * head_dim, dim]``" in line for line in lines), width
