"""Framing and scaling the top-k tiles of Fig. 2, without any plotting library.

Zeiler & Fergus (2014), Fig. 2, show each of a feature map's top 9 activations
as a patch (the unit's receptive field cut from its image) and a projection. A
*frame* holds one of them: the receptive field where it fits inside the image
size, else the whole image (a deep unit's box can be larger than the image).
Frame pixels that are in both the image and the box are shown; the others are
NaN (drawn white). Projections are shown each on its own scale: zero is
mid-grey and the strongest 0.5% of pixels saturate (:func:`signed_scale`).
Used by :mod:`zfcourse.figures.fig2` (figures) and :mod:`zfcourse.atlas` (the site).
"""
from __future__ import annotations

import torch

from . import receptive

__all__ = ["OUTSIDE", "frames", "image_frames", "signed_scale"]

OUTSIDE = float("nan")   # marks frame pixels outside the image or the box; drawn white


def frames(model, layer: str, crops: torch.Tensor, positions, image_size) -> torch.Tensor:
    """Unclipped receptive-field crops ``[M, C, S, S]`` (as from ``TopK.crop_patches`` or
    ``TopK.project(crop=True)``) -> frames ``[M, C, min(S, H), min(S, W)]``, NaN where
    a frame pixel is outside the image or the box (see the module docstring)."""
    size, stride, padding = receptive.receptive_field(model, layer)
    corner = torch.as_tensor(positions, device=crops.device).reshape(-1, 2) * stride - padding
    return _frame(crops, corner, size, corner, image_size)


def image_frames(model, layer: str, images: torch.Tensor, positions) -> torch.Tensor:
    """The same frames cut from whole images ``[M, C, H, W]`` (each at its own position):
    equal to ``frames`` of their crops, without making a crop larger than the image."""
    size, stride, padding = receptive.receptive_field(model, layer)
    corner = torch.as_tensor(positions, device=images.device).reshape(-1, 2) * stride - padding
    return _frame(images, torch.zeros_like(corner), size, corner, tuple(images.shape[-2:]))


def _frame(source: torch.Tensor, origin: torch.Tensor, size: int, corner: torch.Tensor, image_size) -> torch.Tensor:
    """Frames from ``source [M, C, h, w]``, whose pixel (0, 0) is image pixel ``origin [M, 2]``;
    ``corner [M, 2]`` is each box's top-left in the image, ``size`` its side."""
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    fh, fw = min(size, H), min(size, W)
    # the frame starts at the box when the box fits in the image, else at the image
    start = torch.stack([corner[:, 0] if size <= H else torch.zeros_like(corner[:, 0]),
                         corner[:, 1] if size <= W else torch.zeros_like(corner[:, 1])], -1)
    rows = start[:, :1] + torch.arange(fh, device=source.device)          # image rows [M, fh]
    cols = start[:, 1:] + torch.arange(fw, device=source.device)
    keep_r = (rows >= 0) & (rows < H) & (rows >= corner[:, :1]) & (rows < corner[:, :1] + size)
    keep_c = (cols >= 0) & (cols < W) & (cols >= corner[:, 1:]) & (cols < corner[:, 1:] + size)
    r = (rows - origin[:, :1]).clamp(0, source.shape[-2] - 1)
    c = (cols - origin[:, 1:]).clamp(0, source.shape[-1] - 1)
    m = torch.arange(len(source), device=source.device)[:, None, None]
    out = source[m, :, r[:, :, None], c[:, None, :]].permute(0, 3, 1, 2)   # [M, C, fh, fw]
    inside = (keep_r[:, :, None] & keep_c[:, None, :])[:, None]
    return out.where(inside, torch.tensor(OUTSIDE, dtype=source.dtype, device=source.device)).contiguous()


def signed_scale(x: torch.Tensor, saturate: float = 0.005) -> torch.Tensor:
    """Each item of a batch to [0, 1] with zero at 0.5: the ``1 - saturate`` quantile of
    its magnitudes (NaN ignored) goes to 0 or 1, the few larger values are clipped."""
    flat = x.detach().float().flatten(1)
    peak = flat.abs().nanquantile(1 - saturate, dim=1).nan_to_num(0).clamp_min(1e-12)
    return (0.5 + flat / (2 * peak[:, None])).clamp(0, 1).view_as(x)
