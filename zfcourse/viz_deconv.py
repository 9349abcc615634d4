"""Figures of the deconvnet chapters: pooling and unpooling, projections beside their image.

* :func:`pool_unpool` and :func:`show_pooling`: max pooling of a small 2-D array, the
  *switches* (where each window's maximum is), and the two ways back: unpooling that adds
  the values of windows sharing a switch (the adjoint, Zeiler & Fergus 2014, Sec. 2.1) and
  ``nn.MaxUnpool2d``, which writes them over one another.
* :func:`show_projections`: an image with a unit's receptive-field box beside projections of
  that unit (one row per unit), each on its own signed scale with zero at mid-grey
  (:func:`zfcourse.topk_plots.signed_scale`, as in chapter 4's figures).
* :func:`outside_share`: how much of a projection lies outside a box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle
from torch import Tensor

from . import reverse
from .plot import to_rgb
from .topk_plots import signed_scale

__all__ = ["Pooling", "pool_unpool", "show_pooling", "draw_box", "outside_share", "show_projections"]


@dataclass
class Pooling:
    """Max pooling of one 2-D array and both ways back (all tensors 2-D)."""
    x: Tensor            # the input [H, W]
    pooled: Tensor       # window maxima [h, w]
    switches: Tensor     # flat index into x of each window's maximum [h, w]
    signal: Tensor       # what comes back from above, one value per window [h, w]
    added: Tensor        # unpooling that adds at shared switches [H, W]
    overwritten: Tensor  # nn.MaxUnpool2d: one write per switch wins [H, W]
    windows: Tensor      # how many windows chose each input position [H, W]
    kernel: int
    stride: int


def pool_unpool(x: Tensor, signal: Tensor | None = None, kernel: int = 3, stride: int = 2) -> Pooling:
    """Pool ``x`` ``[H, W]`` (no padding) and unpool ``signal`` (default: the pooled values)
    both ways. ``added`` keeps every value (``added.sum() == signal.sum()``); ``overwritten``
    keeps one value per shared switch."""
    if x.dim() != 2:
        raise ValueError(f"x must be a 2-D array [H, W], got shape {list(x.shape)}")
    x = x.float()
    pooled, switches = F.max_pool2d(x[None, None], kernel, stride, return_indices=True)
    signal = pooled.clone() if signal is None else torch.as_tensor(signal, dtype=x.dtype).view_as(pooled)
    added, _ = reverse.unpool(signal, switches, tuple(x.shape))
    overwritten = F.max_unpool2d(signal, switches, kernel, stride, output_size=tuple(x.shape))
    windows = torch.zeros(x.numel()).index_add_(0, switches.flatten(), torch.ones(switches.numel()))
    return Pooling(x, pooled[0, 0], switches[0, 0], signal[0, 0], added[0, 0], overwritten[0, 0],
                   windows.view_as(x), kernel, stride)


def _grid(ax, values: Tensor, title: str, cmap: str, highlight: Tensor | None = None, fmt: str = "{:g}"):
    ax.imshow(values.numpy(), cmap=cmap, vmin=0, vmax=max(float(values.max()), 1e-9), interpolation="nearest")
    for (r, c), v in zip(torch.cartesian_prod(*map(torch.arange, values.shape)).tolist(), values.flatten().tolist()):
        red = highlight is not None and bool(highlight[r, c])
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=8,
                color="red" if red else ("black" if v > 0.6 * float(values.max()) else "white"),
                fontweight="bold" if red else "normal")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def show_pooling(p: Pooling, title: str | None = None):
    """Four panels: the input with its switches ringed (the number of windows that chose
    each), the signal coming back per window, and the two unpoolings; positions where
    ``MaxUnpool2d`` lost a contribution are in red."""
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), gridspec_kw=dict(width_ratios=[7, 3.4, 7, 7]))
    _grid(axes[0], p.x, f"input, {p.kernel}x{p.kernel} windows at stride {p.stride}", "Greys_r", fmt="{:.0f}")
    for (r, c), n in zip(torch.cartesian_prod(*map(torch.arange, p.x.shape)).tolist(), p.windows.flatten().tolist()):
        if n:
            axes[0].add_patch(plt.Circle((c, r), 0.45, fill=False, color="tab:orange" if n == 1 else "red", lw=2))
            axes[0].text(c + 0.42, r - 0.42, f"{n:.0f}", color="red" if n > 1 else "tab:orange", fontsize=7,
                         fontweight="bold", ha="center", va="center",
                         bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none"))
    _grid(axes[1], p.signal, "signal from above\n(one value per window)", "viridis")
    lost = p.windows > 1
    _grid(axes[2], p.added, f"unpool: add (sum {float(p.added.sum()):g})", "viridis", lost)
    _grid(axes[3], p.overwritten, f"MaxUnpool2d: overwrite (sum {float(p.overwritten.sum()):g})", "viridis", lost)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def draw_box(ax, box: Sequence[int], color: str = "yellow", lw: float = 1.5, **kw):
    """Outline ``(top, left, bottom, right)`` (exclusive, as from
    :func:`zfcourse.receptive.patch_box`) around its pixels on an ``imshow`` axis."""
    top, left, bottom, right = box
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                           edgecolor=color, lw=lw, **kw))


def outside_share(x: Tensor, box: Sequence[int]) -> Tensor:
    """The share of each item's energy (sum of squares over ``[..., C, H, W]``) that lies
    outside ``box``; 0 for an all-zero item."""
    top, left, bottom, right = box
    energy = x.detach().float().pow(2).sum(-3)
    inside = torch.zeros(energy.shape[-2:], dtype=torch.bool, device=x.device)
    inside[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = True
    total = energy.flatten(-2).sum(-1)
    return (energy * ~inside).flatten(-2).sum(-1) / total.clamp_min(1e-30) * (total > 0)


def show_projections(image: Tensor, rows: Sequence[tuple[str, Mapping[str, Tensor], Sequence[int] | None]],
                     crop: bool = False, margin: int = 0, size: float = 2.2, title: str | None = None,
                     as_image: Sequence[str] = ()):
    """One row per unit: ``(label, {name: projection [3, H, W]}, box)``.

    The first column is ``image`` (``[3, H, W]`` in [0, 1], or ``[R, 3, H, W]``: one per
    row) with the unit's box; each projection follows on its own signed scale (zero is
    mid-grey), with the box outlined, except the entries named in ``as_image``: pictures
    in [0, 1], shown as they are. ``crop=True`` shows projections cut to the box grown by
    ``margin`` pixels on each side and clipped to the image, so that the small boxes of low
    layers are not lost in a large image; with a margin the box is outlined in the cut.
    """
    names = list(rows[0][1])
    images = image.expand(len(rows), *image.shape) if image.dim() == 3 else image
    if len(images) != len(rows):
        raise ValueError(f"got {len(images)} images for {len(rows)} rows")
    fig, axes = plt.subplots(len(rows), 1 + len(names), figsize=(size * (1 + len(names)), size * len(rows) + 0.3),
                             squeeze=False)
    H, W = image.shape[-2:]
    for ax_row, img, (label, projections, box) in zip(axes, images, rows):
        ax_row[0].imshow(to_rgb(img), interpolation="nearest")
        if box is not None:
            draw_box(ax_row[0], box)
        ax_row[0].set_title(label, fontsize=9)
        for ax, name in zip(ax_row[1:], names):
            shown = projections[name].cpu() if name in as_image else signed_scale(projections[name][None].cpu())[0]
            top = left = 0
            if crop and box is not None:
                top, left = max(box[0] - margin, 0), max(box[1] - margin, 0)
                shown = shown[:, top:min(box[2] + margin, H), left:min(box[3] + margin, W)]
            ax.imshow(to_rgb(shown), interpolation="nearest")
            if box is not None and (margin or not crop):
                draw_box(ax, (box[0] - top, box[1] - left, box[2] - top, box[3] - left), color="tab:orange", lw=1)
            ax.set_title(name, fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
