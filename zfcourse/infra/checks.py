"""Argument checks shared by the public functions: each raises a ValueError or TypeError
that names the argument and says what is valid, before any work is done.

Floats are refused where a count or an index is expected (never truncated), booleans are
not numbers here, and non-finite numbers are refused where a value is expected.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["count", "number", "layer_list"]


def count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum``: a count, a size, a number of steps."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int (at least {minimum}), got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def number(value: Any, name: str, minimum: float | None = None, *, above: bool = False) -> float:
    """``value`` as a finite float, at least (or with ``above``, more than) ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if above else value < minimum):
        raise ValueError(f"{name} must be {'more than' if above else 'at least'} {minimum}, got {value}")
    return float(value)


def layer_list(layers: Any, valid: list[str]) -> list[str]:
    """``layers`` (a name or a sequence of names) as a non-empty list of names."""
    names = [layers] if isinstance(layers, str) else layers
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"layers must be a layer name or a list of them ({', '.join(valid)}), "
                        f"got {layers!r}")
    if not names:
        raise ValueError(f"layers must name at least one layer; valid: {', '.join(valid)}")
    return list(names)
