"""The atlas: the paper's Fig. 2 for every unit of every convolutional layer.

Zeiler & Fergus (2014), Sec. 4 and Fig. 2, show for a few feature maps "the top 9
activations ... across the validation data", each projected to pixel space by the
deconvnet, beside "the corresponding image patches". The atlas does it for every
channel ``c`` of every layer ``conv1``..``conv5`` of a network:

* **search** (:func:`zfcourse.topk.top_activations_layers`): one pass over the
  validation set for all layers; image ``n`` scores ``s[n, c] = max_{h,w} a[n, c, h, w]``
  and the nine best images are kept, lower index first among ties. Only positive
  scores count: a unit that fires in fewer than nine images has fewer entries, and a
  unit that never fires has none (its projections would be zero);
* **patches** (:func:`zfcourse.receptive.crop_patches`): the receptive field of the
  unit at its strongest position, cut from the image;
* **projections** (:func:`zfcourse.deconv.projection_chunks`): that activation alone,
  sent down by the deconvnet (switches, rectification, transposed filters), shown in
  the same frame. Each needed image is loaded and run forward once, and all its
  neurons of all layers are projected from that pass;
* **facts**: the largest activation, the number (and share) of images in which the
  unit fires (``s[n, c] > 0``), the most common classes among its entries and their
  *purity*, the share of the most common class, beside ``chance_purity``, the mean
  purity of as many random validation images (chapter 4's measure); for ``conv1``
  the filter itself.

Tiles are framed as in chapter 4 (:mod:`zfcourse.framing`): the box where it fits in
the image, else the whole image; white where a frame pixel is outside the image or the
box. Projections are each on their own scale, zero mid-grey (:func:`~zfcourse.framing.signed_scale`).

The manifest (``manifest.json``, one per network; a public data contract, format 1)::

    {"format": 1, "network": "mini-alexnet", "title": "...", "world": "synthetic",
     "dataset": "...", "num_images": 2000, "k": 9, "image_size": [64, 64],
     "rule": "deconvnet", "classes": ["name of label 0", ...], "chance_purity": [p1, ..., p9],
     "layers": {"conv1": {
        "channels": 48, "receptive_field": [size, stride, padding], "map": [h, w],
        "frame": [fh, fw], "tile": [th, tw],
        "thumbnails": {"file": "conv1/thumbnails.jpg", "cell": [h, w], "columns": 16},
        "units": [{"channel": 0, "max": 3.2, "active": 1890, "active_share": 0.945,
                   "purity": 0.44, "classes": [{"label": 3, "count": 4}, ...],
                   "top": [{"index": 17, "value": 3.2, "position": [h, w], "label": 3}, ...],
                   "patches": "conv1/0000-patches.webp",
                   "projections": "conv1/0000-projections.webp",
                   "filter": "conv1/0000-filter.webp"}, ...]}, ...}}

Images are JPEG, or lossless WebP where tiles are at most 16 pixels a side (conv1 of
the minis and of AlexNet): the extension says which (:mod:`zfcourse.infra.sprites`).

Units are in channel order; ``top`` holds at most ``k`` entries, strongest first, only
positive ones (a unit that never fires has ``"top": []``, ``"active": 0`` and no image
files). ``index`` counts images of the world's validation set in its order, ``label`` is
that image's class (a position in ``classes``), ``value``
is the activation as the forward pass computes it (7 significant digits), ``position``
is ``(h, w)`` in the layer's map, whose receptive field starts at
``(h * stride - padding, w * stride - padding)`` in the image. A unit's ``classes`` are
the (at most three) most common labels of its entries, ``purity`` the share of the most
common one. Image paths are relative
to the manifest. ``patches`` and ``projections`` are strips of the entries' tiles,
entry ``j`` at ``x = j * tile[1]``; a tile is a frame of ``frame`` image pixels scaled to
``tile``. ``thumbnails`` holds one cell per unit in channel order: its strongest
projection and patch side by side. ``filter`` (``conv1`` only) is the unit's filter,
zero mid-grey. ``max`` and ``purity`` are null for a unit that never fires.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from . import deconv, framing, receptive, reverse, topk
from .data import labels as dataset_labels
from .deconv import projection_chunks
from .framing import image_frames, signed_scale
from .infra import cache, sprites
from .infra.device import compute_device, placed
from .infra.fingerprint import fingerprint
from .infra.progress import tqdm
from .models import activations, conv_of, layer_names
from .topk import chance_purity, top_activations_layers

__all__ = ["FORMAT", "Network", "conv_layers", "build", "cached_build", "write"]

FORMAT = 1          # the manifest's format; bump on an incompatible change
COLUMNS = 16        # thumbnail cells per row of a layer's sheet
CHANCE_DRAWS = 2000
CHUNK = 64          # neurons framed (and projected) at a time: bounds the memory per batch


@dataclass
class Network:
    """One network of the atlas and the images it is shown on."""
    name: str                           # a slug: the folder of its manifest
    title: str
    model: nn.Module
    images: Dataset                     # items: image tensors or (image, label, ...)
    classes: list[str]
    denormalize: Callable[[torch.Tensor], torch.Tensor]   # model input -> [0, 1]
    world: str
    dataset: str                        # a description for the reader


def conv_layers(model: nn.Module) -> list[str]:
    """The rectified convolution layers ``conv1``.. of ``model``; a ValueError if it has none."""
    names = [n for n in layer_names(model) if n.startswith("conv")]
    if not names:
        raise ValueError(f"the atlas shows convolutional layers, and this model has none "
                         f"(its layers: {', '.join(layer_names(model)) or 'none'})")
    return names


def build(net: Network, k: int = 9, batch_size: int = 64, workers: int = 0,
          device: str | torch.device | None = None, seed: int = 0, progress: bool = True) -> dict:
    """The atlas of ``net``: ``{"manifest": dict, "files": {relative path: bytes}}``.

    Deterministic: the search breaks ties by index, and ``seed`` fixes the random
    draws behind ``chance_purity``. ``workers`` processes decode images (DataLoader).
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a zfcourse.atlas.Network, got {type(net).__name__}")
    if len(net.images) == 0:
        raise ValueError("the atlas needs at least one image; net.images is empty")
    model, layers = net.model, conv_layers(net.model)
    device = torch.device(device) if device is not None else compute_device(model)
    labels = dataset_labels(net.images)
    loader = DataLoader(net.images, batch_size=batch_size, num_workers=workers)
    tops = top_activations_layers(model, loader, layers, k=k, device=device, progress=progress)
    k = min(k, len(net.images))
    first = _first_image(net.images)
    with placed(model, device):
        tiles = _tiles(net, tops, batch_size, workers, device, progress)
        maps = activations(model, first[None].to(device), layers)
    image_size = list(first.shape[-2:])
    files, layer_info = {}, {}
    for layer in layers:
        layer_info[layer] = _layer(net, layer, tops[layer], tiles[layer], labels,
                                   list(maps[layer].shape[-2:]), image_size, files)
    chance = _chance_purity(labels, k, seed)
    manifest = {"format": FORMAT, "network": net.name, "title": net.title, "world": net.world,
                "dataset": net.dataset, "num_images": len(net.images), "k": k,
                "image_size": image_size, "rule": "deconvnet", "classes": list(net.classes),
                "chance_purity": chance, "layers": layer_info}
    return {"manifest": manifest, "files": files}


def _entries(top) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat (channel, rank) of the positive entries of a layer's top-k."""
    return (top.values > 0).nonzero(as_tuple=True)


def _tiles(net: Network, tops: dict, batch_size: int, workers: int, device, progress: bool) -> dict:
    """Patch and projection frames of every positive entry, image by image:
    ``{layer: (patch tiles, projection tiles)}`` as uint8 ``[C, k, 3, th, tw]``."""
    model = net.model
    entries = {layer: _entries(top) for layer, top in tops.items()}
    needed = torch.cat([tops[layer].indices[c, j] for layer, (c, j) in entries.items()]).unique()
    image_size = list(_first_image(net.images).shape[-2:])
    out: dict = {}
    for layer, top in tops.items():
        size = receptive.receptive_field(model, layer)[0]
        frame = sprites.to_tiles(torch.zeros(1, 3, min(size, image_size[0]), min(size, image_size[1])))
        shape = (top.values.shape[0], top.k, 3, *frame.shape[-2:])
        out[layer] = (torch.full(shape, 255, dtype=torch.uint8), torch.full(shape, 255, dtype=torch.uint8))
    loader = DataLoader(Subset(net.images, needed.tolist()), batch_size=batch_size, num_workers=workers)
    row_of = torch.full((len(net.images),), -1, dtype=torch.long)
    start = 0
    for batch in tqdm(loader, desc=f"atlas {net.name}: patches and projections", disable=not progress):
        x = (batch[0] if isinstance(batch, (list, tuple)) else batch).to(device)
        ids = needed[start:start + len(x)]
        row_of[ids] = torch.arange(len(x))
        start += len(x)
        neurons, picked = {}, {}
        for layer, (c, j) in entries.items():
            n = tops[layer].indices[c, j]
            mine = row_of[n] >= 0
            if mine.any():
                picked[layer] = (c[mine], j[mine])
                neurons[layer] = (row_of[n[mine]].to(device), c[mine].to(device),
                                  tops[layer].positions[c[mine], j[mine]].to(device))
        side = {layer: out[layer][0].shape[-1] for layer in picked}
        for layer, (c, j) in picked.items():
            image, _, position = neurons[layer]
            for part in _slices(len(c), CHUNK):
                patches = image_frames(model, layer, net.denormalize(x[image[part]]), position[part]).cpu()
                out[layer][0][c[part], j[part]] = sprites.to_tiles(patches, side[layer])
        for layer, part, proj in (projection_chunks(model, x, neurons, chunk_size=CHUNK) if neurons else []):
            c, j = (t[part] for t in picked[layer])
            proj = signed_scale(image_frames(model, layer, proj, neurons[layer][2][part])).cpu()
            out[layer][1][c, j] = sprites.to_tiles(proj, side[layer])
        row_of[ids] = -1
    return out


def _slices(n: int, size: int) -> list[slice]:
    return [slice(i, i + size) for i in range(0, n, size)]


def _round(v: float) -> float:
    return float(f"{v:.7g}")


def _layer(net: Network, layer: str, top, tiles, labels: torch.Tensor, map_size: list[int],
           image_size: list[int], files: dict) -> dict:
    """A layer's entry of the manifest; its image files go into ``files``."""
    model = net.model
    patch_tiles, proj_tiles = tiles
    C = top.values.shape[0]
    thumbs = torch.full((C, 3, sprites.THUMB, 2 * sprites.THUMB), 255, dtype=torch.uint8)
    filters = None
    if layer == "conv1":
        weight = conv_of(model, layer).weight.detach().float().cpu()
        filters = sprites.to_tiles(signed_scale(weight), sprites.TILE) if weight.shape[1] == 3 else None
    units = []
    for c in range(C):
        n_top = int((top.values[c] > 0).sum())
        entries = [{"index": int(top.indices[c, j]), "value": _round(float(top.values[c, j])),
                    "position": top.positions[c, j].tolist(),
                    "label": int(labels[top.indices[c, j]])} for j in range(n_top)]
        counts = labels[top.indices[c, :n_top]].bincount()
        common = counts.argsort(descending=True, stable=True)[:3]
        unit = {"channel": c, "max": entries[0]["value"] if n_top else None,
                "active": int(top.active[c]), "active_share": _round(int(top.active[c]) / len(net.images)),
                "purity": _round(int(counts.max()) / n_top) if n_top else None,
                "classes": [{"label": int(i), "count": int(counts[i])} for i in common if counts[i]],
                "top": entries}
        stem = f"{layer}/{c:04d}"
        if n_top:
            unit["patches"] = _add(files, f"{stem}-patches", sprites.strip(patch_tiles[c, :n_top]))
            unit["projections"] = _add(files, f"{stem}-projections", sprites.strip(proj_tiles[c, :n_top]))
            thumbs[c] = sprites.strip(_thumb(torch.stack([proj_tiles[c, 0], patch_tiles[c, 0]])))
        if filters is not None:
            unit["filter"] = _add(files, f"{stem}-filter", filters[c])
        units.append(unit)
    sheet = _add(files, f"{layer}/thumbnails", sprites.sheet(thumbs, COLUMNS))
    size = receptive.receptive_field(model, layer)
    return {"channels": C, "receptive_field": list(size), "map": map_size,
            "frame": [min(size[0], n) for n in image_size], "tile": list(patch_tiles.shape[-2:]),
            "thumbnails": {"file": sheet, "cell": [sprites.THUMB, 2 * sprites.THUMB],
                           "columns": COLUMNS},
            "units": units}


def _add(files: dict, stem: str, image: torch.Tensor) -> str:
    """Encode ``image`` into ``files`` under ``stem`` and its format's extension; the path."""
    data, ext = sprites.encode(image)
    files[f"{stem}.{ext}"] = data
    return f"{stem}.{ext}"


def _thumb(tiles: torch.Tensor) -> torch.Tensor:
    """uint8 tiles -> ``THUMB``-pixel squares (a tile smaller than a square is centred on white)."""
    small = sprites.to_tiles(tiles.float() / 255, sprites.THUMB, enlarge=True)
    out = torch.full((len(tiles), 3, sprites.THUMB, sprites.THUMB), 255, dtype=torch.uint8)
    h, w = small.shape[-2:]
    top, left = (sprites.THUMB - h) // 2, (sprites.THUMB - w) // 2
    out[..., top:top + h, left:left + w] = small
    return out


def _first_image(images: Dataset) -> torch.Tensor:
    first = images[0]
    return first[0] if isinstance(first, (list, tuple)) else first


def _chance_purity(labels: torch.Tensor, k: int, seed: int) -> list[float]:
    """Mean purity of ``n`` validation images drawn at random (with replacement), n = 1..k."""
    return [_round(chance_purity(labels, n, CHANCE_DRAWS, seed + n)) for n in range(1, k + 1)]


def _code_version() -> str:
    """A hash of the source of every module whose change changes an atlas."""
    h = hashlib.sha256()
    for source in [__file__] + [m.__file__ for m in (deconv, framing, receptive, reverse, sprites, topk)]:
        h.update(Path(source).read_bytes())
    return h.hexdigest()[:16]


def _validate(atlas) -> None:
    if not (isinstance(atlas, dict) and atlas.get("manifest", {}).get("format") == FORMAT
            and isinstance(atlas.get("files"), dict)):
        raise ValueError("not an atlas of this format")


def cached_build(net: Network, k: int = 9, root: str | os.PathLike | None = None, **kw) -> dict:
    """:func:`build`, cached in ``root`` (default ``<cache>/atlas``), keyed by the weights,
    the dataset, ``k`` and the code version; written atomically, so an interrupted build
    leaves nothing, and a file that cannot be read is rebuilt with a warning."""
    if len(net.images) == 0:
        raise ValueError("the atlas needs at least one image; net.images is empty")
    name = cache.key(format=FORMAT, code=_code_version(), weights=fingerprint(net.model), k=k,
                     dataset=fingerprint(net.images), title=net.title, world=net.world,
                     classes=net.classes, description=net.dataset, seed=kw.get("seed", 0))
    path = Path(root) if root is not None else cache.cache_dir() / "atlas"

    def make():
        atlas = build(net, k=k, **kw)
        files = {p: torch.frombuffer(bytearray(b), dtype=torch.uint8) for p, b in atlas["files"].items()}
        return {"manifest": atlas["manifest"], "files": files}

    stored = cache.cached(path / f"{net.name}-{name}.pt", make, _validate)
    files = {p: t.numpy().tobytes() for p, t in stored["files"].items()}
    return {"manifest": stored["manifest"], "files": files}


def write(atlas: dict, folder: str | os.PathLike) -> Path:
    """Write an atlas to ``folder`` (``manifest.json`` and its images), replacing what is
    there. The files go to a temporary folder beside it first, so an interrupted write
    leaves the old atlas or none, never part of one."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for rel, data in atlas["files"].items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        (tmp / "manifest.json").write_text(json.dumps(atlas["manifest"], separators=(",", ":")))
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
