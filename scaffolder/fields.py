"""Typed readers for config.json fields: each failure names the field and says what is expected."""

from __future__ import annotations

import math
from typing import Any

from scaffolder.errors import ConfigFieldError

_MISSING = object()
# The largest integer a field may hold: a size, count or token id beyond int32 is no real model's,
# and keeping well below float's range lets every later computation stay exact.
MAX_INT = 2**31 - 1


def _lookup(config: dict[str, Any], field: str, default: Any) -> Any:
    value = config.get(field, default)
    if value is _MISSING:
        raise ConfigFieldError(field, "is missing; add it to config.json")
    return value


def read_int(
    config: dict[str, Any],
    field: str,
    default: Any = _MISSING,
    *,
    minimum: int = 1,
    maximum: int = MAX_INT,
) -> int:
    """An integer in [``minimum``, ``maximum``]; booleans and floats (even 22.0) are rejected."""
    value = _lookup(config, field, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigFieldError(field, f"must be an integer, got {_describe(value)}")
    if value < minimum:
        raise ConfigFieldError(field, f"must be >= {minimum}, got {_describe_int(value)}")
    if value > maximum:
        raise ConfigFieldError(field, f"must be <= {maximum}, got {_describe_int(value)}")
    return value


def read_float(
    config: dict[str, Any],
    field: str,
    default: Any = _MISSING,
    *,
    positive: bool = True,
) -> float:
    """A finite number (ints are accepted); positive unless ``positive=False``."""
    value = _lookup(config, field, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigFieldError(field, f"must be a number, got {_describe(value)}")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float's range (10**400)
        value = math.inf if value > 0 else -math.inf
    if not math.isfinite(value):
        raise ConfigFieldError(field, f"must be a finite number, got {value}")
    if positive and value <= 0:
        raise ConfigFieldError(field, f"must be > 0, got {value}")
    return value


def read_bool(config: dict[str, Any], field: str, default: Any = _MISSING) -> bool:
    """A JSON boolean (``true``/``false``), not 0/1 or a string."""
    value = _lookup(config, field, default)
    if not isinstance(value, bool):
        raise ConfigFieldError(field, f"must be true or false, got {_describe(value)}")
    return value


def read_choice(
    config: dict[str, Any], field: str, choices: tuple[str, ...], default: Any = _MISSING
) -> str:
    """A string from a fixed set of known names."""
    value = _lookup(config, field, default)
    if not isinstance(value, str) or value not in choices:
        known = ", ".join(choices)
        raise ConfigFieldError(field, f"unsupported value {_describe(value)}; supported: {known}")
    return value


def require(condition: bool, field: str, reason: str) -> None:
    """Raise a ConfigFieldError for ``field`` unless ``condition`` holds."""
    if not condition:
        raise ConfigFieldError(field, reason)


def _describe_int(value: int) -> str:
    """An integer for a message: its digits, unless there are too many to read."""
    return str(value) if abs(value) < 10**40 else "an integer of more than 40 digits"


def _describe(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{_describe_int(value)} (int)"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"
