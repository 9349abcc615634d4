"""Figures shared by the chapters: image grids, filters and feature maps."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_rgb(x: torch.Tensor) -> np.ndarray:
    """A [3, H, W] image in [0, 1] -> an H x W x 3 array for imshow."""
    return x.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def scale_each(x: torch.Tensor) -> torch.Tensor:
    """Stretch each item of a batch to [0, 1] on its own, as the paper shows filters and projections."""
    flat = x.detach().float().flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    return ((flat - lo[:, None]) / (hi - lo).clamp_min(1e-12)[:, None]).view_as(x)


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
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
