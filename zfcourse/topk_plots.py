"""Figures of the top-k search: the paper's Fig. 2 and a picker for any channel.

Fig. 2 of Zeiler & Fergus (2014) shows, for a feature map, "the top 9 activations"
over the validation data, each "projected down to pixel space" by the deconvnet,
beside "the corresponding image patches" (Sec. 4). Here each of the nine is shown
in a *frame*: the unit's receptive field (:mod:`zfcourse.receptive`) where that
fits inside the image size, else the whole image (a deep unit's box can be larger
than the image: in the synthetic world a conv5 unit sees 163 px of a 64 px
image). Frame pixels that are in both the image and the box are shown; the others
(the box beyond the image border, or the image beyond the box) are white. So the
frames of one layer all have one size, a patch is never stretched, and a patch
cut off by the border shows where it was cut.

Projections are shown each on its own scale, as in the paper: zero is mid-grey;
the strongest 0.5% of pixels saturate to black or white, so that a few extreme
pixels do not leave the rest of the projection a flat grey.
"""
from __future__ import annotations

from typing import Callable, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from IPython.display import display
from matplotlib.patches import Rectangle

from . import receptive
from .models import layer_names
from .topk import TopK
from .widgets import show_in

__all__ = ["frames", "signed_scale", "montage", "panels", "fig2", "channel_figure", "explorer"]

OUTSIDE = float("nan")   # marks frame pixels outside the image or the box; drawn white


def frames(model, layer: str, crops: torch.Tensor, positions, image_size) -> torch.Tensor:
    """Unclipped receptive-field crops ``[M, C, S, S]`` (as from ``TopK.crop_patches`` or
    ``TopK.project(crop=True)``) -> frames ``[M, C, min(S, H), min(S, W)]``, NaN where
    a frame pixel is outside the image or the box (see the module docstring)."""
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    size = receptive.receptive_field(model, layer)[0]
    positions = torch.as_tensor(positions).reshape(-1, 2)
    out = torch.full((len(crops), crops.shape[1], min(size, H), min(size, W)), OUTSIDE, dtype=crops.dtype)
    for m, position in enumerate(positions.tolist()):
        top, left, _, _ = receptive.patch_box(model, layer, position)
        ct, cl, cb, cr = receptive.patch_box(model, layer, position, image_size=(H, W))
        # the frame starts at the box when the box fits in the image, else at the image
        fy, fx = (top if size <= H else 0), (left if size <= W else 0)
        out[m, :, ct - fy:cb - fy, cl - fx:cr - fx] = crops[m, :, ct - top:cb - top, cl - left:cr - left]
    return out


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


def _image_size(images) -> tuple[int, int]:
    first = images[0]
    first = first[0] if isinstance(first, (list, tuple)) else first
    return tuple(first.shape[-2:])


def panels(world, top: TopK, images, channels: Sequence[int], rule: str = "deconvnet"):
    """The two halves of Fig. 2 for ``channels``: projection frames and patch frames, each
    ``[channels, k, 3, h, w]`` in [0, 1] (NaN outside), from one batched projection."""
    model, size = world.model, _image_size(images)
    channels = list(channels)
    positions = top.positions[channels].reshape(-1, 2)
    proj = top.project(model, images, channel=channels, rule=rule, crop=True).flatten(0, 1)
    patches = top.crop_patches(model, images, channel=channels).flatten(0, 1)
    proj = signed_scale(frames(model, top.layer, proj, positions, size))
    patches = frames(model, top.layer, world.denormalize(patches.to(world.device)).cpu(), positions, size)
    return proj.unflatten(0, (len(channels), -1)), patches.unflatten(0, (len(channels), -1))


def _show(ax, image: torch.Tensor, title: str | None = None):
    ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def fig2(world, tops: dict[str, TopK], images, channels: dict[str, Sequence[int]], rule: str = "deconvnet",
         size: float = 1.9):
    """Fig. 2 for this network: one row per layer, for each chosen channel the
    projections of its top-k (left) beside their image patches (right)."""
    ncols = max(len(c) for c in channels.values())
    fig, axes = plt.subplots(len(channels), 2 * ncols, figsize=(2 * ncols * size, len(channels) * (size + 0.3)),
                             squeeze=False)
    for row, (layer, chs) in zip(axes, channels.items()):
        proj, patches = panels(world, tops[layer], images, chs, rule)
        for q, c in enumerate(chs):
            _show(row[2 * q], montage(proj[q]), f"{layer} ch {c}: projections")
            _show(row[2 * q + 1], montage(patches[q]), "patches")
        for ax in row[2 * len(chs):]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def channel_figure(world, top: TopK, images, channel: int, captions: Callable[[int], str] | None = None,
                   rule: str = "deconvnet"):
    """One channel's top-k: projections, patches, and each whole image with the box."""
    proj, patches = panels(world, top, images, [channel], rule)
    size = _image_size(images)
    nrows = -(-top.k // 3)
    fig = plt.figure(figsize=(12, 1.6 + 1.1 * nrows))
    left, right = fig.subfigures(1, 2, width_ratios=[2, 1.1])
    ax1, ax2 = left.subplots(1, 2)
    _show(ax1, montage(proj[0]), "projections (deconvnet)")
    _show(ax2, montage(patches[0]), "patches (receptive field)")
    k = top.k
    grid = right.subplots(nrows, 3, squeeze=False, gridspec_kw=dict(hspace=0.5))
    for j, ax in enumerate(grid.flat):
        ax.axis("off")
        if j >= k:
            continue
        n = int(top.indices[channel, j])
        item = images[n]
        image = world.denormalize((item[0] if isinstance(item, (list, tuple)) else item).to(world.device)).cpu()
        ax.imshow(image.permute(1, 2, 0).numpy())
        t, l, b, r = receptive.patch_box(world.model, top.layer, top.positions[channel, j].tolist(), image_size=size)
        ax.add_patch(Rectangle((l - 0.5, t - 0.5), r - l, b - t, fill=False, edgecolor="yellow", linewidth=2))
        ax.set_title((captions(n) if captions else f"image {n}") + f"\n{float(top.values[channel, j]):.2f}", fontsize=7)
    right.suptitle("where: the images and boxes", fontsize=9)
    left.suptitle(f"{top.layer}, channel {channel}: the top {k} over {len(images):,} images", fontsize=10)
    return fig


def explorer(world, tops: dict[str, TopK], images, layer: str | None = None, channel: int = 0,
             captions: Callable[[int], str] | None = None):
    """A layer picker and a channel slider over precomputed searches ``tops``; draws
    :func:`channel_figure` for the chosen channel."""
    names = [n for n in layer_names(world.model) if n in tops]
    layer = layer or names[0]
    if layer not in tops:
        raise KeyError(f"no search for layer {layer!r}; searched: {', '.join(names)}")
    layer_w = W.Dropdown(options=names, value=layer, description="layer")
    channel_w = W.IntSlider(channel, 0, tops[layer].values.shape[0] - 1, description="channel")
    out = W.Output()

    def redraw(_=None):
        show_in(out, channel_figure(world, tops[layer_w.value], images, channel_w.value, captions))

    def on_layer(_):
        channel_w.unobserve(redraw, "value")
        channel_w.max = tops[layer_w.value].values.shape[0] - 1
        channel_w.observe(redraw, "value")
        redraw()

    layer_w.observe(on_layer, "value")
    channel_w.observe(redraw, "value")
    redraw()
    box = W.VBox([W.HBox([layer_w, channel_w]), out])
    display(box)
    return box
