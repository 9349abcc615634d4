"""The paper's Fig. 2: the top-k search's projections beside their image patches.

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

Projections are shown each on its own signed scale, as in the paper: zero is
mid-grey and the strongest 0.5% of pixels saturate. Frames and the scale live in
:mod:`zfcourse.framing`, which the atlas shares.
"""
from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt

from .. import receptive
from ..framing import frames, signed_scale
from ..topk import TopK
from .common import draw_box, montage, show_image

__all__ = ["panels", "fig2", "channel_figure"]


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
            show_image(row[2 * q], montage(proj[q]), f"{layer} ch {c}: projections")
            show_image(row[2 * q + 1], montage(patches[q]), "patches")
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
    show_image(ax1, montage(proj[0]), "projections (deconvnet)")
    show_image(ax2, montage(patches[0]), "patches (receptive field)")
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
        draw_box(ax, (t, l, b, r), color="yellow", lw=2)
        ax.set_title((captions(n) if captions else f"image {n}") + f"\n{float(top.values[channel, j]):.2f}", fontsize=7)
    right.suptitle("where: the images and boxes", fontsize=9)
    left.suptitle(f"{top.layer}, channel {channel}: the top {k} over {len(images):,} images", fontsize=10)
    return fig
