"""Literal and text filters: the only way a config value reaches a generated file.

``py``, ``toml`` and ``yaml`` accept validated numbers, booleans, None and strings (escaped);
``prose`` and ``comment`` wrap text written one sentence per line.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from typing import Any

from scaffolder.errors import ScaffoldError


def py_literal(value: Any) -> str:
    """A Python literal for a validated scalar (bool, int, finite float, None, escaped str), or a
    tuple of them (e.g. LongRoPE's per-frequency factors)."""
    if isinstance(value, tuple | list):
        items = [py_literal(item) for item in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if value is None or isinstance(value, bool | int | str):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ScaffoldError(f"cannot render non-finite number {value!r}")
        return repr(value)
    raise ScaffoldError(f"cannot render a {type(value).__name__} as a Python literal")


def toml_literal(value: Any) -> str:
    """A TOML literal: true/false, numbers, or a basic string with JSON escaping."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return py_literal(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise ScaffoldError(f"cannot render a {type(value).__name__} as a TOML literal")


class Name(str):
    """A known identifier (e.g. ``RMSNorm``, ``rope``): written bare in YAML, checked first."""

    __slots__ = ()

    def __new__(cls, value: str) -> Name:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value) or value.lower() in _YAML_WORDS:
            raise ScaffoldError(f"{value!r} is not a plain identifier")
        return super().__new__(cls, value)


# Words YAML 1.1 reads as booleans or null when bare.
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null"}


def yaml_literal(value: Any) -> str:
    """A YAML scalar (true/false/null, numbers, a double-quoted string) or a flow list of them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # YAML 1.1 (PyYAML) reads 1e-05 as a string: the mantissa needs a dot.
        text = py_literal(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, int):
        return py_literal(value)
    if isinstance(value, Name):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(yaml_literal(item) for item in value) + "]"
    raise ScaffoldError(f"cannot render a {type(value).__name__} as a YAML value")


# Spaces inside ``code literals`` are held by this character while wrapping, so a line never
# breaks inside one (a literal longer than the width gets a line of its own).
_HELD_SPACE = "\x00"


def _hold_literals(text: str) -> str:
    return re.sub(r"``[^`]+``", lambda m: m.group(0).replace(" ", _HELD_SPACE), text)


def _wrap(sentences: list[str], pad: str, width: int, hang: str = "") -> list[str]:
    lines = textwrap.wrap(
        _hold_literals(" ".join(sentences)),
        width=width,
        initial_indent=pad,
        subsequent_indent=pad + hang,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [line.replace(_HELD_SPACE, " ") for line in lines]


def prose(text: str, indent: int = 0, width: int = 100, first_indent: int | None = None) -> str:
    """Wrap prose written one sentence per line.

    The lines of a paragraph are joined and wrapped to ``width`` columns at ``indent`` spaces
    (the very first line at ``first_indent``); blank lines separate paragraphs. A line starting
    with ``- `` starts a list item (wrapped with a hanging indent; the lines after it continue
    the item); a line starting with ``|`` (a table row) stays a line of its own.
    """
    pad = " " * indent
    blocks: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip("\n")):
        lines: list[str] = []
        sentences: list[str] = []
        hang = ""
        for line in paragraph.splitlines():
            stripped = line.strip()
            if stripped.startswith(("- ", "|")):
                lines += _wrap(sentences, pad, width, hang) if sentences else []
                sentences, hang = [], ""
            if stripped.startswith("|"):
                lines.append(pad + stripped)
            elif stripped:
                if stripped.startswith("- "):
                    hang = "  "
                sentences.append(stripped)
        lines += _wrap(sentences, pad, width, hang) if sentences else []
        if lines:
            blocks.append("\n".join(lines))
    result = "\n\n".join(blocks)
    if first_indent is not None:
        result = " " * first_indent + result[indent:]
    return result


def comment(text: str, width: int = 100, lead: str = "", hang: str = "") -> str:
    """``text`` (prefixed by ``lead``) as ``# `` comment lines wrapped to ``width`` columns; lines
    after the first are indented by ``hang`` (a list item's continuation)."""
    lines = textwrap.wrap(
        lead + " ".join(text.split()),
        width=width - 2,
        subsequent_indent=hang,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join(f"# {line}" for line in lines)


def ordinal(n: int) -> str:
    """``2`` -> ``"2nd"``, ``11`` -> ``"11th"``, ``23`` -> ``"23rd"``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
