"""The occluder: a square of one colour pasted into images (Zeiler & Fergus 2014, Sec. 4.2).

Its colour is given in *model-input* space. ``fill=0.0`` is the colour the input
normalisation subtracts: for a per-channel mean/std normalisation such as ImageNet's,
exactly the dataset's mean colour, so the occluder adds no signal of its own.
``fill=world`` uses :func:`mean_colour` of a :class:`zfcourse.World`; a number or one
value per channel is used as given. The occlusion maps (:mod:`zfcourse.occlusion`),
the correspondence analysis (:mod:`zfcourse.correspondence`) and the invariance curves'
border (:mod:`zfcourse.invariance`) all fill this way.
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor

__all__ = ["mean_colour", "fill_value", "occluded", "per_image"]


def mean_colour(world) -> Tensor:
    """A world's mean image colour in ``[0, 1]``, ``[3]``: the grey of the paper's occluder.

    The mean its input normalisation subtracts when the preprocessing names one
    (torchvision's ImageNet transforms: ImageNet's mean colour, which the
    normalisation maps to exactly zero), else the mean of its validation images
    (at most the first 512).
    """
    mean = getattr(world.preprocess, "mean", None)
    if mean is not None:
        return torch.as_tensor(mean, dtype=torch.float32)
    images = getattr(world.val, "images", None)
    if images is not None and images.dtype == torch.uint8:
        return images[:512].float().mean(dim=(0, 2, 3)) / 255
    x = torch.stack([world.val[i][0] for i in range(min(512, len(world.val)))])
    return world.denormalize(x).mean(dim=(0, 2, 3)).cpu()


def fill_value(fill, channels: int, device=None, dtype=torch.float32) -> Tensor:
    """``fill`` as a ``[channels, 1, 1]`` tensor in model-input space (see the module doc).

    ``fill``: a number, one number per channel (sequence or tensor), or a World
    (its :func:`mean_colour`, normalised as the world's model expects).
    """
    if hasattr(fill, "normalize") and hasattr(fill, "val"):
        fill = fill.normalize(mean_colour(fill)[:, None, None])
    what = f"fill must be a number, {channels} numbers (one per channel) or a World"
    if isinstance(fill, numbers.Real) and not isinstance(fill, bool):
        fill = [fill]
    try:
        value = torch.as_tensor(fill, dtype=dtype).to(device).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{what}; got {fill!r}") from None
    if value.numel() not in (1, channels):
        raise ValueError(f"{what}; got {value.numel()} numbers")
    if not torch.isfinite(value).all():
        raise ValueError(f"{what}, all finite; got {value.tolist()}")
    return value.expand(channels).reshape(channels, 1, 1).clone()


def occluded(images: Tensor, top: Tensor, left: Tensor, window: tuple[int, int], fill: Tensor) -> Tensor:
    """Copies of ``images`` [B, C, H, W], copy ``k`` with the square at ``(top[k], left[k])`` set to ``fill``.

    ``fill`` is ``[C, 1, 1]`` (see :func:`fill_value`); ``top`` and ``left`` are LongTensors ``[B]``.
    """
    H, W = images.shape[-2:]
    hh = torch.arange(H, device=images.device)
    ww = torch.arange(W, device=images.device)
    inside_h = (hh >= top[:, None]) & (hh < top[:, None] + window[0])           # [B, H]
    inside_w = (ww >= left[:, None]) & (ww < left[:, None] + window[1])         # [B, W]
    inside = inside_h[:, None, :, None] & inside_w[:, None, None, :]            # [B, 1, H, W]
    return torch.where(inside, fill.to(images.dtype), images)


def per_image(value, n: int, name: str, device) -> Tensor:
    """``value`` (an int or one per image: a sequence, tensor or array of ints) as a
    LongTensor ``[n]``; floats and booleans are refused, not truncated."""
    what = f"{name} must be an int or one int per image ({n}), got {value!r}"
    try:
        ints = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(what) from None
    if ints.is_floating_point() or ints.is_complex() or ints.dtype == torch.bool:
        raise TypeError(what)
    value = ints.to(device=device, dtype=torch.long).reshape(-1)
    if value.numel() == 1:
        value = value.expand(n)
    if value.numel() != n:
        raise ValueError(f"{name} must be an int or one per image ({n}), got {value.numel()} values")
    return value


