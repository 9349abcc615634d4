"""Where the course keeps what it downloads and what it computes.

* ``ZFCOURSE_CACHE``: trained weights, features, searches (default
  ``~/.cache/zfcourse``, or ``$XDG_CACHE_HOME/zfcourse``);
* ``ZFCOURSE_DATA``: downloaded datasets (default ``<cache>/data``);
* ``ZFCOURSE_IMAGENETTE``: which Imagenette torchvision downloads (``full``,
  ``320px``, ``160px``; default ``320px``).

Pretrained weights live in torchvision's own cache (``TORCH_HOME``).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "data_dir", "IMAGENETTE_SIZES", "imagenette_size", "imagenette_folder"]

IMAGENETTE_SIZES = ("full", "320px", "160px")


def cache_dir() -> Path:
    """``$ZFCOURSE_CACHE``, else ``~/.cache/zfcourse`` (or ``$XDG_CACHE_HOME/zfcourse``)."""
    root = os.environ.get("ZFCOURSE_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "zfcourse"


def data_dir() -> Path:
    """``$ZFCOURSE_DATA``, else ``<cache>/data``: where datasets are downloaded."""
    root = os.environ.get("ZFCOURSE_DATA")
    return Path(root).expanduser() if root else cache_dir() / "data"


def imagenette_size() -> str:
    """The Imagenette download ``ZFCOURSE_IMAGENETTE`` names (default ``320px``)."""
    size = os.environ.get("ZFCOURSE_IMAGENETTE", "320px")
    if size not in IMAGENETTE_SIZES:
        raise ValueError(f"unknown Imagenette size {size!r} (ZFCOURSE_IMAGENETTE); "
                         f"valid: {', '.join(IMAGENETTE_SIZES)}")
    return size


def imagenette_folder(split: str) -> Path:
    """Where torchvision's Imagenette (in ``ZFCOURSE_IMAGENETTE``'s size) keeps a split once downloaded."""
    from torchvision.datasets import Imagenette

    archive = Imagenette._ARCHIVES[imagenette_size()][0]
    return data_dir() / Path(archive).name.removesuffix(".tgz") / split
