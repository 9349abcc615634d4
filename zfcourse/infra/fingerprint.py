"""One short hash per thing a cached result depends on: weights, images, datasets.

Every cache of the package keys its inputs with :func:`fingerprint`, so that two inputs
that differ never share a cached result. What counts:

* a tensor: its dtype, shape and values;
* a module: its parameter and buffer names and values (architecture and weights);
* a tensor-backed dataset (``.images`` and ``.labels``, as the synthetic world's, a
  subset of one, Imagenette held in memory): its images and labels;
* a ``TensorDataset``: every tensor it holds;
* a ``Subset``: its parent's fingerprint and the indices;
* a file-backed dataset (``.paths``, or ``.root`` and ``.files``): each file's path,
  size and modification time, its labels and its transform;
* any other ``Dataset``: every item, read once (sound, but as slow as a pass over it).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

__all__ = ["fingerprint"]


def fingerprint(obj: Any) -> str:
    """A 16-hex-digit hash of ``obj``'s contents (see the module doc for what counts)."""
    if torch.is_tensor(obj):
        h = hashlib.sha256(str((obj.dtype, tuple(obj.shape))).encode())
        h.update(_bytes(obj))
        return h.hexdigest()[:16]
    if isinstance(obj, torch.nn.Module):
        h = hashlib.sha256()
        for name, t in obj.state_dict().items():
            h.update(name.encode())
            h.update(_bytes(t))
        return h.hexdigest()[:16]
    if torch.is_tensor(getattr(obj, "images", None)) and hasattr(obj, "labels"):
        h = hashlib.sha256()
        for t in (obj.images, obj.labels):
            h.update(_bytes(torch.as_tensor(t)))
        return h.hexdigest()[:16]
    if isinstance(obj, Subset):
        return _json(parent=fingerprint(obj.dataset), indices=[int(i) for i in obj.indices])
    if isinstance(obj, TensorDataset):
        return _json(tensors=[fingerprint(t) for t in obj.tensors])
    files = _files(obj)
    if files is not None:
        labels = getattr(obj, "labels", None)
        return _json(kind=type(obj).__name__, files=[_stat(p) for p in files],
                     labels=None if labels is None else fingerprint(torch.as_tensor(labels)),
                     transform=repr(getattr(obj, "transform", None)),
                     size=getattr(obj, "size", None), background=getattr(obj, "background", None))
    if isinstance(obj, Dataset):
        h = hashlib.sha256(type(obj).__name__.encode())
        for i in range(len(obj)):
            for part in _parts(obj[i]):
                h.update(part)
        return h.hexdigest()[:16]
    raise TypeError(f"cannot fingerprint a {type(obj).__name__}: expected a tensor, a module or a "
                    "Dataset")


def _bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _json(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _files(obj) -> list[Path] | None:
    if hasattr(obj, "paths"):
        return [Path(p) for p in obj.paths]
    if hasattr(obj, "root") and hasattr(obj, "files"):
        return [Path(obj.root) / f for f in obj.files]
    return None


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return str(path), -1, -1
    return str(path), st.st_size, st.st_mtime_ns


def _parts(item):
    """The bytes of an item's tensors and numbers, in order."""
    if torch.is_tensor(item):
        yield str((item.dtype, tuple(item.shape))).encode()
        yield _bytes(item)
    elif isinstance(item, (tuple, list)):
        for x in item:
            yield from _parts(x)
    else:
        yield repr(item).encode()
