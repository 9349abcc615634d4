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

__all__ = ["cache_dir", "data_dir", "IMAGENETTE_SIZES", "imagenette_size", "imagenette_folder", "env_int"]

IMAGENETTE_SIZES = ("full", "320px", "160px")


def cache_dir() -> Path:
    """``$ZFCOURSE_CACHE``, else ``~/.cache/zfcourse`` (or ``$XDG_CACHE_HOME/zfcourse``):
    a writable folder, made if missing; a ValueError naming the variable otherwise, so
    that a bad setting stops a run before its work, not when the result is saved."""
    root = os.environ.get("ZFCOURSE_CACHE")
    if root:
        return _writable(Path(root).expanduser(), "ZFCOURSE_CACHE")
    xdg = os.environ.get("XDG_CACHE_HOME")
    return _writable((Path(xdg) if xdg else Path.home() / ".cache") / "zfcourse",
                     "XDG_CACHE_HOME" if xdg else "the cache folder")


def data_dir() -> Path:
    """``$ZFCOURSE_DATA``, else ``<cache>/data``: where datasets are downloaded (checked as
    :func:`cache_dir` is)."""
    root = os.environ.get("ZFCOURSE_DATA")
    return _writable(Path(root).expanduser(), "ZFCOURSE_DATA") if root else \
        _writable(cache_dir() / "data", "ZFCOURSE_CACHE")


def _writable(path: Path, variable: str) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"{variable} must name a folder; {str(path)!r} is a file") from None
    except OSError as e:
        raise ValueError(f"{variable}: cannot make the folder {str(path)!r} ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{variable}: the folder {str(path)!r} is not writable; "
                         f"point {variable} at one that is")
    return path


def env_int(variable: str, default: int, minimum: int = 0) -> int:
    """The integer an environment variable holds (``default`` when unset or empty); a
    ValueError naming the variable when it is not an integer of at least ``minimum``."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{variable} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{variable} must be at least {minimum}, got {value}")
    return value


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
