"""Progress bars for long loops: shown in Jupyter, Colab and terminals, left out of the
website's pages, where a finished bar says nothing and leaves a gap.

``jupyter-book build .`` marks its kernels as building the static website
(``$ZFCOURSE_SITE == "1"``, set by :mod:`zfcourse.site`); :func:`tqdm` then draws nothing.
"""
from __future__ import annotations

import os

from tqdm.auto import tqdm as _tqdm

__all__ = ["SITE", "on_static_site", "tqdm"]

SITE = "ZFCOURSE_SITE"   # set to "1" by the book's Sphinx extension while it builds the website


def on_static_site() -> bool:
    """Whether the code runs to build the static website (``$ZFCOURSE_SITE == "1"``)."""
    return os.environ.get(SITE) == "1"


def tqdm(*args, disable: bool = False, **kwargs):
    """``tqdm.auto.tqdm``, disabled on the static website."""
    return _tqdm(*args, disable=disable or on_static_site(), **kwargs)
