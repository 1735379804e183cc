"""User-facing errors.

Every mistake a researcher can make in a Gin file or on the command line is
reported as a :class:`ConfigError` whose message names the binding, file or
field that is wrong and what was expected. The CLI prints the message alone (no
traceback) and exits with status 2.
"""

from __future__ import annotations

import math
from typing import Any, Sequence


class ConfigError(ValueError):
    """A user mistake in configuration or input data, found before compilation."""


def check_int(name: str, value: Any, *, min_value: int | None = None) -> int:
    """Returns ``value`` as an int, or raises naming ``name`` (e.g. 'BernoulliBandit.num_arms')."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
        hasattr(value, "__index__")
    ):
        raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if min_value is not None and value < min_value:
        raise ConfigError(f"{name} must be >= {min_value}, got {value}.")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Returns ``value`` as a float in the given interval, or raises naming ``name``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}.") from None
    if math.isnan(x):
        raise ConfigError(f"{name} must be a number, got NaN.")
    if low is not None and (x < low or (low_open and x == low)):
        raise ConfigError(f"{name} must be {'>' if low_open else '>='} {low}, got {x}.")
    if high is not None and (x > high or (high_open and x == high)):
        raise ConfigError(f"{name} must be {'<' if high_open else '<='} {high}, got {x}.")
    return x


def check_floats(
    name: str,
    values: Any,
    *,
    length: int | None = None,
    low: float | None = None,
    high: float | None = None,
) -> tuple[float, ...]:
    """Checks a sequence of numbers (e.g. arm means, prior pseudo-counts)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) and not hasattr(
        values, "__len__"
    ):
        raise ConfigError(f"{name} must be a list of numbers, got {values!r}.")
    values = list(values)
    if length is not None and len(values) != length:
        raise ConfigError(f"{name} must have {length} entries, got {len(values)}.")
    out = []
    for i, v in enumerate(values):
        out.append(check_float(f"{name}[{i}]", v, low=low, high=high))
    return tuple(out)
