"""Projections beside their image (Zeiler & Fergus 2014, Sec. 2.1, Fig. 1): an image
with a unit's receptive-field box beside projections of that unit (one row per unit),
each on its own signed scale with zero at mid-grey
(:func:`zfcourse.figures.common.signed_scale`, as in chapter 4's figures)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
from torch import Tensor

from .common import draw_box, finished, signed_scale, to_rgb

__all__ = ["show_projections"]


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
    return finished(fig, axes, title)
