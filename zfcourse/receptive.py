"""Receptive fields: the input pixels one unit of a feature map can see.

Zeiler & Fergus (2014) show, beside each of the top-9 activations of a feature
map, "the corresponding image patches" (Sec. 4, caption of Fig. 2): the part of the input
image inside the unit's receptive field. This module computes that part from the
geometry of the network's own modules; no table of sizes is hard-coded.

For a chain of convolutions and poolings, the unit at row ``h`` of layer ``l``
sees the input rows ``[h * J_l - P_l, h * J_l - P_l + S_l)`` (columns alike), with
size ``S``, stride (jump) ``J`` and effective padding ``P`` given by the
recurrence, for a module with kernel ``k``, stride ``s``, padding ``p`` and
dilation ``d``::

    S_l = S_{l-1} + (k - 1) * d * J_{l-1}
    J_l = J_{l-1} * s
    P_l = P_{l-1} + p * J_{l-1}

from ``S_0 = J_0 = 1, P_0 = 0`` (an input pixel sees itself). ReLU, dropout and
local response normalisation (which mixes channels, not positions) leave all
three unchanged, and so does ``ceil_mode``: it only adds an output position at
the end, it does not move where the others start.

Border convention: a box is *not* clipped to the image unless asked. Its
unclipped form always has ``S x S`` pixels and may start above/left of the image
or end past it (the network's zero padding); :func:`crop_patches` fills those
pixels with a constant, so every patch of a layer has the same size and the
unit's position is always at the same place inside it. ``patch_box(...,
image_size=H)`` gives the clipped box: exactly the pixels of a crop that come
from the image.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import torch
from torch import nn

from .models import layer_index, map_size, sequence

__all__ = ["receptive_field", "patch_box", "crop_patches", "keep_box"]

# Modules that act on each position separately: they do not change the box.
_POINTWISE = (nn.ReLU, nn.LocalResponseNorm, nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, nn.Identity)
# Modules after which a unit depends on the whole input (given its size).
_DENSE = (nn.Linear, nn.Flatten, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _square(value, what: str, module: nn.Module) -> int:
    a, b = (value, value) if isinstance(value, int) else tuple(value)
    if a != b:
        raise ValueError(f"{module} has a non-square {what} {value}; receptive_field handles square ones only")
    return a


def receptive_field(model: nn.Module, layer: str) -> tuple[int, int, int]:
    """``(size, stride, padding)`` of one unit of ``layer``, in input pixels.

    The unit at ``(h, w)`` sees the input box whose top-left corner is
    ``(h * stride - padding, w * stride - padding)`` and whose sides are
    ``size`` pixels (see the module docstring for the recurrence).

    >>> from zfcourse.models import alexnet
    >>> receptive_field(alexnet(), "pool5")
    (195, 32, 66)

    Fully connected layers (``fc6``..``fc8``, anything after a Flatten or an
    adaptive pooling) see the whole image, whatever its size, so they have no
    box of their own: asking for one raises a ValueError.
    """
    size, stride, padding = 1, 1, 0
    for m in sequence(model)[: layer_index(model, layer) + 1]:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = _square(m.kernel_size, "kernel", m)
            s = _square(m.stride, "stride", m)
            d = _square(getattr(m, "dilation", 1), "dilation", m)
            if m.padding == "valid":
                p = 0
            elif m.padding == "same":
                # torch puts the odd pixel of 'same' padding at the bottom/right
                p = d * (k - 1) // 2
            else:
                p = _square(m.padding, "padding", m)
            size += (k - 1) * d * stride
            padding += p * stride
            stride *= s
        elif isinstance(m, _DENSE):
            raise ValueError(f"{layer!r} is fully connected: each of its units sees the whole image, "
                             "so it has no receptive-field box")
        elif not isinstance(m, _POINTWISE):
            raise TypeError(f"receptive_field does not know how {type(m).__name__} moves pixels")
    return size, stride, padding


def patch_box(model: nn.Module, layer: str, position: Sequence[int],
              image_size: int | tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of the receptive field of ``layer`` at
    ``position = (h, w)``; bottom and right are exclusive, as in slicing
    ``image[:, top:bottom, left:right]``.

    Without ``image_size`` the box is unclipped: ``size x size`` pixels, possibly
    reaching past the image border. With ``image_size`` (``H`` or ``(H, W)``) it
    is clipped to the image: the pixels a crop takes from the image; the position
    must then lie in the layer's map at that size.
    """
    size, stride, padding = receptive_field(model, layer)
    h, w = _position(position)
    top, left = h * stride - padding, w * stride - padding
    bottom, right = top + size, left + size
    if image_size is None:
        return top, left, bottom, right
    H, W = (image_size, image_size) if isinstance(image_size, int) else image_size
    _inside(model, layer, (H, W), torch.tensor([[h, w]]))
    return max(top, 0), max(left, 0), min(bottom, H), min(right, W)


def _position(position) -> tuple[int, int]:
    """``(h, w)`` as two non-negative ints; floats are refused, not truncated."""
    values = position.tolist() if torch.is_tensor(position) else position
    try:
        h, w = values
    except (TypeError, ValueError):
        raise ValueError(f"position must be a pair of ints (h, w), got {position!r}") from None
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (h, w)):
        raise TypeError(f"position must be a pair of ints (h, w), got {position!r}")
    if h < 0 or w < 0:
        raise ValueError(f"position must be non-negative, got {(int(h), int(w))}")
    return int(h), int(w)


def _inside(model: nn.Module, layer: str, image_size: tuple[int, int], positions: torch.Tensor) -> None:
    """Raise unless every ``(h, w)`` of ``positions [M, 2]`` is in ``layer``'s map."""
    rows, cols = map_size(model, layer, image_size)
    outside = (positions < 0).any(1) | (positions[:, 0] >= rows) | (positions[:, 1] >= cols)
    if outside.any():
        bad = positions[outside.nonzero()[0, 0]].tolist()
        raise ValueError(f"position {tuple(bad)} is outside {layer}'s {rows}x{cols} map "
                         f"(images of {image_size[0]}x{image_size[1]}): h in 0..{rows - 1}, "
                         f"w in 0..{cols - 1}")


def crop_patches(model: nn.Module, images: torch.Tensor, layer: str, positions,
                 fill: float = 0.0) -> torch.Tensor:
    """The receptive-field patches of ``layer``: one per image, at that image's
    position (``positions`` is ``[M, 2]`` as ``(h, w)`` for ``images [M, C, H, W]``).

    Returns ``[M, C, size, size]``: the unclipped :func:`patch_box`, with pixels
    outside the image set to ``fill`` (0 is the mean colour of normalised
    images, and 0 is also what a projection holds there).
    """
    size, stride, padding = receptive_field(model, layer)
    positions = torch.as_tensor(positions, device=images.device)
    if positions.is_floating_point() or positions.dtype == torch.bool:
        raise TypeError(f"positions must be integers (h, w), got {positions.dtype}")
    positions = positions.long().reshape(-1, 2)
    if len(positions) != len(images):
        raise ValueError(f"got {len(images)} images but {len(positions)} positions")
    _inside(model, layer, tuple(images.shape[-2:]), positions)
    offsets = torch.arange(size, device=images.device)
    rows = positions[:, :1] * stride - padding + offsets      # [M, size]
    cols = positions[:, 1:] * stride - padding + offsets
    H, W = images.shape[-2:]
    inside = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
    m = torch.arange(len(images), device=images.device)[:, None, None]
    # Advanced indices around a slice put their dimensions first: [M, size, size, C].
    patches = images[m, :, rows.clamp(0, H - 1)[:, :, None], cols.clamp(0, W - 1)[:, None, :]]
    patches = patches.where(inside[..., None], torch.as_tensor(fill, dtype=images.dtype, device=images.device))
    return patches.permute(0, 3, 1, 2).contiguous()


def keep_box(images: torch.Tensor, box: Sequence[int], fill: float = 0.0) -> torch.Tensor:
    """A copy of ``images`` ``[..., H, W]`` with every pixel outside ``box`` ``(top, left,
    bottom, right)`` (as from :func:`patch_box`, clipped to the image here) set to ``fill``:
    a unit of that box sees the same pixels in both. 0 is the mean colour of normalised
    images."""
    top, left, bottom, right = (max(int(v), 0) for v in box)
    out = torch.full_like(images, fill)
    out[..., top:bottom, left:right] = images[..., top:bottom, left:right]
    return out
