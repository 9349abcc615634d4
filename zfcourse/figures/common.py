"""What every figure of the course draws with: images on axes, signed scales, boxes, grids.

Projections are shown each on its own scale, as in the paper: zero is mid-grey;
the strongest 0.5% of pixels saturate to black or white (:func:`signed_scale`), so
that a few extreme pixels do not leave the rest of the projection a flat grey.
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle

from .. import models


# Okabe & Ito's eight colours, told apart with every common colour-vision deficiency;
# past eight, tab20's alternate shades follow.
CATEGORICAL = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
               "#000000")


def categorical(n: int) -> list:
    """``n`` colours for categories, colour-blind safe for up to eight."""
    if n <= len(CATEGORICAL):
        return list(CATEGORICAL[:n])
    import matplotlib.pyplot as plt
    extra = plt.get_cmap("tab20").colors
    return list(CATEGORICAL) + [extra[(2 * j + 1) % 20] for j in range(n - len(CATEGORICAL))]


def to_rgb(x: torch.Tensor) -> np.ndarray:
    """A [3, H, W] image in [0, 1] -> an H x W x 3 array for imshow."""
    return x.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def scale_each(x: torch.Tensor) -> torch.Tensor:
    """Stretch each item of a batch to [0, 1] on its own, as the paper shows filters and projections."""
    flat = x.detach().float().flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    return ((flat - lo[:, None]) / (hi - lo).clamp_min(1e-12)[:, None]).view_as(x)


def signed_scale(x: torch.Tensor, saturate: float = 0.005) -> torch.Tensor:
    """Each item of a batch to [0, 1] with zero at 0.5: the ``1 - saturate`` quantile of
    its magnitudes (NaN ignored) goes to 0 or 1, the few larger values are clipped."""
    flat = x.detach().float().flatten(1)
    peak = flat.abs().nanquantile(1 - saturate, dim=1).nan_to_num(0).clamp_min(1e-12)
    return (0.5 + flat / (2 * peak[:, None])).clamp(0, 1).view_as(x)


def montage(tiles: torch.Tensor, ncols: int = 3, gap: int | None = None, line: float = 0.25) -> torch.Tensor:
    """Tiles ``[k, 3, h, w]`` in [0, 1] (NaN: white) -> one image ``[3, H, W]``, ``ncols``
    per row, separated by ``gap`` pixels of grey ``line``."""
    k, c, h, w = tiles.shape
    gap = max(1, h // 24) if gap is None else gap
    nrows = -(-k // ncols)
    out = torch.full((c, nrows * (h + gap) + gap, ncols * (w + gap) + gap), line)
    for i, tile in enumerate(tiles.float().nan_to_num(1.0).clamp(0, 1)):
        r, q = divmod(i, ncols)
        out[:, gap + r * (h + gap): gap + r * (h + gap) + h, gap + q * (w + gap): gap + q * (w + gap) + w] = tile
    return out


def draw_box(ax, box: Sequence[int], color: str = "yellow", lw: float = 1.5, **kw):
    """Outline ``(top, left, bottom, right)`` (exclusive, as from
    :func:`zfcourse.receptive.patch_box`) around its pixels on an ``imshow`` axis."""
    top, left, bottom, right = box
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                           edgecolor=color, lw=lw, **kw))


def show_image(ax, image: torch.Tensor, title: str | None = None, fontsize: float = 9):
    """An image ``[3, H, W]`` in [0, 1] (NaN: white) on an axis without ticks."""
    ax.imshow(to_rgb(image.nan_to_num(1.0)), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def image_grid(images, titles=None, ncols: int = 8, size: float = 1.6, title: str | None = None, cmap=None):
    """Show a batch (tensor [N, 3|1, H, W] in [0, 1], or a list of them) in a grid."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if title else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        if img.dim() == 3 and img.shape[0] == 3:
            ax.imshow(to_rgb(img), interpolation="nearest")
        else:
            ax.imshow(img.detach().float().cpu().squeeze(0).numpy(), cmap=cmap or "viridis", interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_filters(weight: torch.Tensor, ncols: int = 12, size: float = 0.8, title: str | None = None):
    """First-layer filters [C, 3, k, k] as colour patches, each stretched to [0, 1] on its own."""
    return image_grid(scale_each(weight), ncols=ncols, size=size, title=title)


def feature_maps(maps: torch.Tensor, channels, ncols: int = 8, size: float = 1.3, title: str | None = None):
    """Chosen channels of one image's feature maps [C, H, W], on one colour scale so that
    strong and weak channels can be compared."""
    chosen = maps[list(channels)].detach().float().cpu()
    vmax = float(chosen.max()) or 1.0
    n = len(chosen)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.4), squeeze=False)
    for ax, c, m in zip(axes.flat, channels, chosen):
        ax.imshow(m.numpy(), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"channel {c}", fontsize=8)
    return finished(fig, axes, title)


def finished(fig, axes, title: str | None = None):
    """``fig`` with every axis of ``axes`` bare, ``title`` above it and the layout tightened."""
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_feature_map(world, images: torch.Tensor, layer: str, channel: int, index: int = 0, acts=None):
    """One channel of one image's feature map, beside the image and overlaid on it."""
    x = images[index: index + 1].to(world.device)
    fmap = (acts if acts is not None else models.activations(world.model, x, layer)[layer])[0, channel].float().cpu()
    img = to_rgb(world.denormalize(x[0]))
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    axes[0].imshow(img)
    axes[0].set_title("image")
    im = axes[1].imshow(fmap.numpy(), cmap="magma", vmin=0, interpolation="nearest")
    axes[1].set_title(f"{layer}, channel {channel} ({fmap.shape[0]}x{fmap.shape[1]})")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    up = F.interpolate(fmap[None, None], size=img.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    axes[2].imshow(img)
    axes[2].imshow(up.numpy(), cmap="magma", alpha=0.6)
    axes[2].set_title(f"overlay, max {float(fmap.max()):.2f}")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig
