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
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler
from tqdm.auto import tqdm

from . import receptive
from .cache import load, save_atomic
from .device import compute_device, model_device, placed
from .models import check_images, layer_index, sequence

__all__ = ["TopK", "top_activations"]


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

    @property
    def k(self) -> int:
        return self.values.shape[1]

    def __repr__(self) -> str:
        return f"TopK(layer={self.layer!r}, channels={self.values.shape[0]}, k={self.k})"

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` atomically: a reader never sees half a file."""
        save_atomic({"values": self.values, "indices": self.indices,
                     "positions": self.positions, "layer": self.layer}, path)

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
        out = [receptive.crop_patches(model, self.layer, _gather(images, idx[s]), pos[s], fill)
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
        from . import deconv

        chs, idx, pos = self._neurons(channel)
        device = model_device(model) or torch.device("cpu")
        dense = self.layer.startswith("fc")      # dense units have no position to pass
        out = []
        for s in _slices(len(idx), batch_size):
            x = _gather(images, idx[s]).to(device)
            p = deconv.project(model, x, self.layer, chs[s].to(device), None if dense else pos[s].to(device),
                               rule=rule)
            if crop:
                p = receptive.crop_patches(model, self.layer, p, pos[s])
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
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    device = torch.device(device) if device is not None else compute_device(model)
    modules = sequence(model)[: layer_index(model, layer) + 1]
    batches = _batches(images, batch_size, device)
    values = indices = flat = None
    seen, width = 0, 1
    with placed(model, device), torch.no_grad():
        for x in tqdm(batches, desc=f"top-{k} {layer}", disable=not progress):
            x = x.to(device, non_blocking=True)
            if not seen:
                check_images(model, x)
            for m in modules:
                x = m(x)
            if x.dim() == 4:
                width = x.shape[3]
            x = x.reshape(x.shape[0], x.shape[1], -1)                     # [n, C, positions]
            # amax, not max: on the CPU indices cost several times the values, and
            # only the k winners need a position (found below)
            best = x.amax(dim=2).T                                        # [C, n]
            C, n = best.shape
            batch_idx = torch.arange(seen, seen + n, device=device).expand(C, n)
            if values is None:
                values, indices, flat = best, batch_idx, torch.zeros_like(batch_idx)
            else:
                values = torch.cat([values, best], dim=1)
                indices = torch.cat([indices, batch_idx], dim=1)
                flat = torch.cat([flat, torch.zeros_like(batch_idx)], dim=1)
            # The running list holds lower indices than the batch, and both are in
            # index order among equal values, so a stable sort keeps lower indices first.
            order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
            values, indices, flat = values.gather(1, order), indices.gather(1, order), flat.gather(1, order)
            fresh = indices >= seen
            maps = x[(indices - seen).clamp(min=0), torch.arange(C, device=device)[:, None]]   # [C, k, positions]
            # argmax gives the first maximal position: the row-major tie rule
            flat = torch.where(fresh, maps.argmax(dim=2), flat)
            seen += n
    if values is None:
        raise ValueError("top_activations got no images")
    positions = torch.stack([flat // width, flat % width], dim=-1)
    return TopK(values.cpu(), indices.cpu(), positions.cpu(), layer)


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
