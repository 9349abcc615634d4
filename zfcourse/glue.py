"""Numbers a chapter computes, quoted in its text on the website (myst-nb's ``glue``).

``{glue:text}`name:.2f``` in a chapter's markdown shows the value its code glued under
``name``, so that prose that depends on a number holds in both worlds. Where myst-nb is
not installed (Colab), :func:`glue` does nothing and the notebook's own output shows the
numbers.
"""
from __future__ import annotations

__all__ = ["glue"]

try:
    from myst_nb import glue
except ImportError:
    def glue(name: str, value, display: bool = True) -> None:
        """A no-op where myst-nb is missing (its ``glue`` with the same arguments)."""
