"""The world a call means when it names none.

Lower layers (``zfcourse.data``) take a ``world`` argument and, when it is left out, use
the current one. They cannot import :mod:`zfcourse.worlds`, which builds on them; instead
``worlds`` registers its :func:`zfcourse.worlds.world` here when it is imported (importing
``zfcourse`` imports it).
"""
from __future__ import annotations

from typing import Any, Callable

_provider: Callable[[], Any] | None = None


def provide(factory: Callable[[], Any]) -> None:
    """Make ``factory()`` the world of calls that name none."""
    global _provider
    _provider = factory


def world():
    """The current world, from the registered factory."""
    if _provider is None:
        raise RuntimeError("no current world: import zfcourse (or pass world=...)")
    return _provider()
