"""Set a few ``key = value`` pairs in a TOML file a user may have edited, changing nothing else.

Only what is asked changes: a key's line inside its ``[section]`` gets the new value (its
comment and indentation kept), a missing key is added after the section's last key, a missing
section is added at the end. Every other byte stays as it was. The result is parsed again and
must hold exactly the requested values (a key written some other way, say as an inline table or
a dotted key, is refused with a one-line error rather than guessed at).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from scaffolder.errors import ScaffoldError

_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
_TABLE_ARRAY = re.compile(r"^\s*\[\[")


def toml_value(value: str | bool | int | float) -> str:
    """A TOML literal: strings as JSON-escaped basic strings (valid TOML), booleans lowercase."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _key_pattern(key: str) -> re.Pattern[str]:
    quoted = re.escape(key)
    return re.compile(rf'^(\s*)(?:{quoted}|"{quoted}")(\s*)=(\s*)(.*)$')


def _comment(rest: str) -> str | None:
    """The trailing comment (with the spaces before it) of a one-line value, or None when the
    value does not end on this line (a multi-line string or array: not edited here)."""
    cuts = [index for index, char in enumerate(rest) if char == "#"] + [len(rest)]
    for cut in cuts:
        try:
            tomllib.loads(f"x = {rest[:cut]}")
        except tomllib.TOMLDecodeError:
            continue
        value = rest[:cut].rstrip()
        return rest[len(value) :]
    return None


def set_keys(text: str, values: dict[str, dict[str, str | bool | int | float]]) -> str:
    """``text`` with ``values[section][key]`` set (see the module docstring)."""
    lines = text.splitlines(keepends=True)
    for section, keys in values.items():
        for key, value in keys.items():
            lines = _set_key(lines, section, key, toml_value(value))
    return "".join(lines)


def _section_span(lines: list[str], section: str) -> tuple[int, int] | None:
    """(index of the header, index after the section's last line) or None."""
    start = None
    for index, line in enumerate(lines):
        header = _HEADER.match(line.rstrip("\r\n"))
        if header or _TABLE_ARRAY.match(line):
            if start is not None:
                return start, index
            if header and header.group(1).strip() == section:
                start = index
    return None if start is None else (start, len(lines))


def _set_key(lines: list[str], section: str, key: str, literal: str) -> list[str]:
    pattern = _key_pattern(key)
    span = _section_span(lines, section)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    if span is None:
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines = [*lines[:-1], lines[-1] + newline]
        gap = [newline] if lines and lines[-1].strip() else []
        return [*lines, *gap, f"[{section}]{newline}", f"{key} = {literal}{newline}"]
    start, end = span
    for index in range(start + 1, end):
        body = lines[index]
        ending = body[len(body.rstrip("\r\n")) :]
        match = pattern.match(body.rstrip("\r\n"))
        if match:
            indent, before, after, rest = match.group(1, 2, 3, 4)
            comment = _comment(rest)
            if comment is None:
                return lines  # left alone; planned_toml says it could not set the key
            lines = list(lines)
            lines[index] = f"{indent}{key}{before}={after}{literal}{comment}{ending}"
            return lines
    last = start  # after the section's last non-blank, non-comment line
    for index in range(start + 1, end):
        stripped = lines[index].strip()
        if stripped and not stripped.startswith("#"):
            last = index
    lines = list(lines)
    if not lines[last].endswith(("\n", "\r")):
        lines[last] += newline
    lines.insert(last + 1, f"{key} = {literal}{newline}")
    return lines


def planned_toml(path: Path, values: dict[str, dict[str, str | bool | int | float]]) -> str:
    """The text of the TOML file at ``path`` with ``values`` set (nothing is written); a file
    that does not parse, or a key this editor cannot set, is a one-line error."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ScaffoldError(f"{path} is not valid TOML ({error}); fix it, then run again") from None
    updated = set_keys(text, values)
    try:
        parsed = tomllib.loads(updated)
    except tomllib.TOMLDecodeError:
        parsed = {}
    for section, keys in values.items():
        for key, value in keys.items():
            if parsed.get(section, {}).get(key) != value:
                raise ScaffoldError(
                    f"{path}: could not set {section}.{key} (it is written in a form this tool "
                    f"does not edit); set it by hand to {toml_value(value)}"
                )
    return updated
