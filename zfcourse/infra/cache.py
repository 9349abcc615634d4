"""An on-disk cache for things that take long to make (trained weights, features).

Files are written atomically (a temporary file in the same folder, then
``os.replace``), so an interrupted run never leaves a partial file under the
final name. They are read with ``torch.load(weights_only=True)``: a cache holds
tensors and plain data only, never code. A file that cannot be read is rebuilt
with a warning rather than a crash.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from .paths import cache_dir

__all__ = ["cache_dir", "key", "save_atomic", "load", "cached"]


def key(**config: Any) -> str:
    """A short stable hash of everything that changes a cached result."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


STALE_SECONDS = 3600   # a temporary file this old was left by a process killed while saving


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to a temporary file beside ``path``, then renamed to it. Temporary
    files of ``path`` left by a killed process (older than :data:`STALE_SECONDS`) go first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):   # another process may remove it first
            if now - old.stat().st_mtime > STALE_SECONDS:
                old.unlink()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def cached(path: str | os.PathLike, build: Callable[[], Any], validate: Callable[[Any], None] | None = None) -> Any:
    """Load ``path`` if it holds a valid result, else ``build()`` it and save it atomically.

    ``validate`` may raise on a file that loads but is not what the caller expects
    (e.g. a state dict with the wrong keys); that file is rebuilt too.
    """
    path = Path(path)
    if path.exists():
        try:
            obj = load(path)
            if validate is not None:
                validate(obj)
            return obj
        except Exception as e:  # any unreadable or unexpected file is rebuilt, never trusted
            warnings.warn(f"cache file {path} is unreadable ({type(e).__name__}: {e}); rebuilding it", stacklevel=2)
    obj = build()
    save_atomic(obj, path)
    return obj
