"""Top-k patch search: the images that excite each feature map most.

Zeiler & Fergus (2014), Sec. 4 and the caption of Fig. 2, show for a feature map "the top 9
activations ... across the validation data", each projected to pixel space and
beside "the corresponding image patches". For channel ``c`` of a layer with
activations ``a[n, c, h, w]`` over images ``n``, the search keeps

    score[n, c] = max_{h, w} a[n, c, h, w]       (the image's strongest position)

and the ``k`` images with the largest scores. An image counts once per channel,
at its strongest position, so nine near-identical crops of one image cannot
fill a row of Fig. 2.

Ties are broken deterministically: a lower dataset index wins, and within an
image the first position in row-major order. When the data holds fewer than
``k`` images, ``k`` shrinks to their number (every image is then in every
channel's list).

The search is one streaming pass through the network, to the layer and no
further, for all channels at once: per batch it takes the maximum over
positions and merges the batch's scores into a running top-k of shape
``[C, k]``, so its memory does not grow with the data set.
:func:`top_activations_layers` serves several layers from the same pass.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from . import deconv, receptive
from .infra.cache import load, save_atomic
from .infra.checks import count, layer_list
from .infra.device import compute_device, model_device, placed
from .infra.progress import tqdm
from .models import check_images, layer_index, layer_names, sequence

__all__ = ["TopK", "top_activations", "top_activations_layers", "purity", "chance_purity",
           "centre_on_object"]


@dataclass(repr=False)
class TopK:
    """The top-k activations of every channel of ``layer``, strongest first.

    ``values [C, k]`` are the activations, ``indices [C, k]`` the dataset
    indices of their images and ``positions [C, k, 2]`` their ``(h, w)`` in the
    feature map (``(0, 0)`` for fully connected layers).
    """
    values: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor
    layer: str
    active: torch.Tensor | None = None    # [C]: images whose score is positive (None if not counted)

    @property
    def k(self) -> int:
        return self.values.shape[1]

    def __repr__(self) -> str:
        return f"TopK(layer={self.layer!r}, channels={self.values.shape[0]}, k={self.k})"

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` atomically: a reader never sees half a file."""
        save_atomic({"values": self.values, "indices": self.indices, "positions": self.positions,
                     "layer": self.layer, "active": self.active}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TopK":
        """Read a file written by :meth:`save` (tensors only: ``weights_only=True``)."""
        return cls(**load(path))

    def _neurons(self, channel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Channels, dataset indices and positions of the chosen rows, flattened."""
        if channel is None:
            chs = torch.arange(self.values.shape[0])
        else:
            chs = torch.as_tensor(channel, dtype=torch.long).reshape(-1)
        return chs.repeat_interleave(self.k), self.indices[chs].reshape(-1), self.positions[chs].reshape(-1, 2)

    def crop_patches(self, model: nn.Module, images, channel=None, fill: float = 0.0,
                     batch_size: int = 256) -> torch.Tensor:
        """The receptive-field patches of the top-k images, Fig. 2's right-hand panels.

        ``images`` is the data searched (Dataset, DataLoader or tensor);
        ``channel`` an int, a list of channels, or ``None`` for all. Returns
        ``[channels, k, 3, size, size]``, padded with ``fill`` beyond the image
        border (see :func:`zfcourse.receptive.crop_patches`).
        """
        chs, idx, pos = self._neurons(channel)
        out = [receptive.crop_patches(model, _gather(images, idx[s]), self.layer, pos[s], fill)
               for s in _slices(len(idx), batch_size)]
        return torch.cat(out).unflatten(0, (-1, self.k))

    def project(self, model: nn.Module, images, channel=None, rule: str = "deconvnet",
                crop: bool = False, batch_size: int = 64) -> torch.Tensor:
        """Each top-k activation projected to pixel space, Fig. 2's left-hand panels.

        Calls :func:`zfcourse.deconv.project` once per ``batch_size`` neurons, each
        seeded at its own channel and position. Returns ``[channels, k, 3, H, W]``,
        or ``[channels, k, 3, size, size]`` cropped to the receptive field when
        ``crop`` (the view of Fig. 2). Runs where the model is.
        """
        chs, idx, pos = self._neurons(channel)
        device = model_device(model) or torch.device("cpu")
        dense = self.layer.startswith("fc")      # dense units have no position to pass
        out = []
        for s in _slices(len(idx), batch_size):
            x = _gather(images, idx[s]).to(device)
            p = deconv.project(model, x, self.layer, chs[s].to(device), None if dense else pos[s].to(device),
                               rule=rule)
            if crop:
                p = receptive.crop_patches(model, p, self.layer, pos[s])
            out.append(p.cpu())
        return torch.cat(out).unflatten(0, (-1, self.k))


def top_activations(model: nn.Module, images, layer: str, k: int = 9, batch_size: int = 64,
                    device: str | torch.device | None = None, progress: bool = True) -> TopK:
    """The ``k`` images that excite each channel of ``layer`` most (the top-9 of Sec. 4).

    ``images``: a Dataset whose items are image tensors or ``(image, label, ...)``
    tuples, a DataLoader over one (it must keep the dataset's order;
    ``batch_size`` is then its own), or a tensor ``[N, 3, H, W]``. Indices in the
    result count images in that order.

    Runs on ``device``, by default the model's if that is not the CPU, else CUDA
    when present. The model is moved there and in eval mode for the search, and
    both are restored afterwards. See the module docstring for ties and for
    data with fewer than ``k`` images.
    """
    return top_activations_layers(model, images, [layer], k, batch_size, device, progress)[layer]


def top_activations_layers(model: nn.Module, images, layers, k: int = 9, batch_size: int = 64,
                           device: str | torch.device | None = None,
                           progress: bool = True) -> dict[str, TopK]:
    """:func:`top_activations` for several layers in one pass over ``images``.

    The network runs once per batch, as deep as the deepest of ``layers``, and
    each layer keeps its own running top-k. Returns ``{layer: TopK}`` in the
    order of ``layers``; each result also counts, per channel, the images whose
    score is positive (``TopK.active``: the channel fires somewhere in them).
    """
    k, batch_size = count(k, "k"), count(batch_size, "batch_size")
    layers = layer_list(layers, layer_names(model))
    if isinstance(images, (str, bytes)) or not (isinstance(images, DataLoader) or (
            hasattr(images, "__len__") and hasattr(images, "__getitem__"))):
        raise TypeError(f"images must be a tensor [N, C, H, W], a Dataset (or a list of images) or "
                        f"a DataLoader, got {type(images).__name__}")
    device = torch.device(device) if device is not None else compute_device(model)
    where = {layer_index(model, name): name for name in layers}
    deepest = where[max(where)]
    modules = sequence(model)[: max(where) + 1]
    running = {name: _Running(k) for name in layers}
    seen = 0
    with placed(model, device), torch.no_grad():
        for x in tqdm(_batches(images, batch_size, device), desc=f"top-{k} {', '.join(layers)}",
                      disable=not progress):
            x = x.to(device, non_blocking=True)
            if not seen:
                check_images(model, x, deepest)
                size = x.shape[1:]
            elif x.shape[1:] != size:
                raise ValueError(f"images must all have one size: the first were {list(size)}, "
                                 f"those from index {seen} are {list(x.shape[1:])}")
            for i, m in enumerate(modules):
                x = m(x)
                if i in where:
                    running[where[i]].update(x, seen)
            seen += len(x)
    if not seen:
        raise ValueError("top_activations got no images")
    return {name: running[name].result(name) for name in layers}


class _Running:
    """The running top-k of every channel of one layer, merged batch by batch."""

    def __init__(self, k: int):
        self.k, self.width = k, 1
        self.values = self.indices = self.flat = self.active = None

    def update(self, x: torch.Tensor, seen: int) -> None:
        """Merge a batch of the layer's maps ``x`` (its first image has index ``seen``)."""
        if x.dim() == 4:
            self.width = x.shape[3]
        x = x.reshape(x.shape[0], x.shape[1], -1)                         # [n, C, positions]
        # amax, not max: on the CPU indices cost several times the values, and
        # only the k winners need a position (found below)
        best = x.amax(dim=2).T                                            # [C, n]
        C, n = best.shape
        batch_idx = torch.arange(seen, seen + n, device=x.device).expand(C, n)
        fires = (best > 0).sum(dim=1)
        if self.values is None:
            values, indices, flat = best, batch_idx, torch.zeros_like(batch_idx)
            self.active = fires
        else:
            values = torch.cat([self.values, best], dim=1)
            indices = torch.cat([self.indices, batch_idx], dim=1)
            flat = torch.cat([self.flat, torch.zeros_like(batch_idx)], dim=1)
            self.active = self.active + fires
        # The running list holds lower indices than the batch, and both are in
        # index order among equal values, so a stable sort keeps lower indices first.
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, : self.k]
        values, indices, flat = values.gather(1, order), indices.gather(1, order), flat.gather(1, order)
        fresh = indices >= seen
        maps = x[(indices - seen).clamp(min=0), torch.arange(C, device=x.device)[:, None]]  # [C, k, positions]
        # argmax gives the first maximal position: the row-major tie rule
        self.values, self.indices = values, indices
        self.flat = torch.where(fresh, maps.argmax(dim=2), flat)

    def result(self, layer: str) -> TopK:
        positions = torch.stack([self.flat // self.width, self.flat % self.width], dim=-1)
        return TopK(self.values.cpu(), self.indices.cpu(), positions.cpu(), layer, self.active.cpu())


def _batches(images, batch_size: int, device: torch.device):
    """Image batches, in dataset order, from a tensor, a Dataset or a DataLoader."""
    if torch.is_tensor(images):
        return images.split(batch_size) if len(images) else []
    if isinstance(images, DataLoader):
        sampler = getattr(images.batch_sampler, "sampler", images.sampler)
        if not isinstance(sampler, SequentialSampler):
            raise ValueError("the DataLoader must visit the dataset in order (shuffle=False, no sampler): "
                             "top_activations reports dataset indices")
        loader = images
    else:
        loader = DataLoader(images, batch_size=batch_size, shuffle=False, pin_memory=device.type == "cuda")
    return _Images(loader)


class _Images:
    """A loader's batches without their labels; keeps ``len`` for the progress bar."""

    def __init__(self, loader: DataLoader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield batch[0] if isinstance(batch, (list, tuple)) else batch


def _gather(images, idx: torch.Tensor) -> torch.Tensor:
    """The images at dataset indices ``idx`` (repeats allowed), as one tensor."""
    if torch.is_tensor(images):
        return images[idx.to(images.device)]
    dataset: Dataset = images.dataset if isinstance(images, DataLoader) else images
    unique, inverse = idx.unique(return_inverse=True)
    items = [dataset[i] for i in unique.tolist()]
    loaded = torch.stack([x[0] if isinstance(x, (list, tuple)) else x for x in items])
    return loaded[inverse]


def _slices(n: int, size: int) -> list[slice]:
    return [slice(i, i + size) for i in range(0, n, size)]


def purity(groups: torch.Tensor) -> float:
    """How alike the top k of each channel are: the share of a row's ``k`` entries that
    belong to its most common group, averaged over the rows of ``groups [C, k]``
    (integer group ids: the class, or the texture, of each top-k image)."""
    groups = torch.as_tensor(groups).long()
    if groups.dim() != 2 or groups.numel() == 0:
        raise ValueError(f"groups must be [channels, k] with k >= 1, got shape {list(groups.shape)}")
    if (groups < 0).any():
        raise ValueError("group ids must be non-negative integers")
    counts = torch.zeros(len(groups), int(groups.max()) + 1).scatter_add_(1, groups, torch.ones(groups.shape))
    return float(counts.amax(1).mean() / groups.shape[1])


def chance_purity(groups: torch.Tensor, k: int = 9, draws: int = 2000, seed: int = 0) -> float:
    """:func:`purity` of ``k`` images drawn at random (``draws`` times, with replacement,
    without regard to any unit) from a dataset whose images have group ids ``groups [N]``:
    what a unit's purity is measured against."""
    groups = torch.as_tensor(groups).long().reshape(-1)
    if not 1 <= k <= len(groups):
        raise ValueError(f"k must be in 1..{len(groups)} (the number of images), got {k}")
    picks = torch.randint(len(groups), (draws, k), generator=torch.Generator().manual_seed(seed))
    return purity(groups[picks])


def centre_on_object(model: nn.Module, top: TopK, masks: torch.Tensor, map_size: int) -> tuple[float, float]:
    """Where the strongest units look: the share of the top-k boxes of ``top`` whose centre
    pixel lies on the object (``masks [N, H, W]``, 255 on the object, 0 off it, as the
    synthetic world's ``val.masks``), and the same share over every position of a
    ``map_size x map_size`` map and every image (what it would be by chance)."""
    masks = torch.as_tensor(masks)
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {list(masks.shape)}")
    size, stride, padding = receptive.receptive_field(model, top.layer)
    last = masks.shape[-1] - 1
    centre = (top.positions * stride - padding + size // 2).clamp(0, last)
    on = masks[top.indices, centre[..., 0], centre[..., 1]].float().mean() / 255
    grid = (torch.arange(map_size) * stride - padding + size // 2).clamp(0, last)
    anywhere = masks[:, grid[:, None], grid[None, :]].float().mean() / 255
    return float(on), float(anywhere)
