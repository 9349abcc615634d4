"""The paper's Fig. 7: occlusion maps (Sec. 4.2), drawn from :class:`zfcourse.occlusion.Occlusion`."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch, Rectangle
from torch import Tensor

from ..occlusion import OVERLAP_BINS, OVERLAP_LABELS, Occlusion, drop_by_overlap
from .common import categorical, scale_each, to_rgb

__all__ = ["fig7", "overlap_bars"]


def fig7(result: Occlusion, images: Tensor, classes, projections: Tensor | None = None,
         outlines: Tensor | None = None, size: float = 2.2):
    """The paper's Fig. 7, one row per image: (a) the image with the occluder where it lowers
    the target's probability most, (b) the summed activation of the chosen feature map,
    (c) ``projections`` of that feature map to pixels (optional), (d) the target's
    probability and (e) the most probable class, as functions of the occluder's position.

    ``images``: ``[N, 3, H, W]`` in ``[0, 1]`` (denormalised); ``classes``: class names;
    ``outlines``: optional object masks ``[N, H, W]`` drawn as a contour on every map.
    Maps are drawn over a faded copy of the image, each cell at its occluder's centre (the
    margin, half an occluder wide, has no cell: no occluder is centred there).
    """
    panels = ["image"] + (["activation"] if result.activation is not None else []) \
        + (["projection"] if projections is not None else []) + ["probability", "predicted"]
    n = len(result.probability)
    fig, axes = plt.subplots(n, len(panels), figsize=(size * len(panels) + 1.2, size * n + 0.3), squeeze=False)
    H, W = result.image_size
    for i in range(n):
        worst = int(result.drop[i].flatten().argmax())
        top, left = int(result.rows[worst // len(result.cols)]), int(result.cols[worst % len(result.cols)])
        for ax, panel in zip(axes[i], panels):
            ax.set_xticks([]), ax.set_yticks([])
            if panel in ("activation", "probability", "predicted"):
                ax.imshow(to_rgb(images[i]), alpha=0.3)       # where the map's cells lie on the image
            ax.set_xlim(-0.5, W - 0.5), ax.set_ylim(H - 0.5, -0.5)
            if panel == "image":
                ax.imshow(to_rgb(images[i]))
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), result.window[1], result.window[0],
                                       fill=False, ec="white", lw=1.5, ls="--"))
                ax.set_title(f"(a) {classes[int(result.target[i])]}\np = {result.baseline_probability[i]:.2f}",
                             fontsize=10)
            elif panel == "activation":
                im = ax.imshow(result.activation[i], cmap="viridis", extent=result.extent)
                ax.set_title(f"(b) {result.layer} map {int(result.channel[i])},\nsummed", fontsize=10)
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
            elif panel == "projection":
                ax.imshow(to_rgb(scale_each(projections[i:i + 1])[0]))
                ax.set_title(f"(c) map {int(result.channel[i])} projected", fontsize=10)
            elif panel == "probability":
                im = ax.imshow(result.probability[i], cmap="magma", vmin=0, vmax=1, extent=result.extent)
                ax.set_title("(d) p(true class)", fontsize=10)
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
            else:
                labels, index = result.predicted[i].unique(return_inverse=True)
                colours = categorical(len(labels))
                ax.imshow(index, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(labels) - 0.5,
                          extent=result.extent, interpolation="nearest")
                ax.set_title("(e) most probable class", fontsize=10)
                ax.legend(handles=[Patch(color=c, label=classes[int(k)][:18]) for c, k in zip(colours, labels)],
                          fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
            if outlines is not None and panel != "projection":
                ax.contour(outlines[i].float().cpu().numpy(), levels=[0.5 * float(outlines[i].max())],
                           colors="white" if panel != "image" else "yellow", linewidths=0.8)
    fig.tight_layout()
    return fig


def overlap_bars(result: Occlusion, masks: Tensor, bins=OVERLAP_BINS, labels=OVERLAP_LABELS):
    """A bar per share of the occluder on the object: the mean drop of the target's
    probability over all occluder positions of all images with that share
    (:func:`zfcourse.occlusion.drop_by_overlap`); ``labels`` name the ``bins``."""
    mean_drop = drop_by_overlap(result, masks, bins)
    if len(labels) != len(mean_drop):
        raise ValueError(f"{len(mean_drop)} bins but {len(labels)} labels")
    fig, ax = plt.subplots(figsize=(5, 2.8))
    ax.bar(list(labels), mean_drop.tolist(), color="tab:blue")
    ax.set_xlabel("share of the occluder on the object")
    ax.set_ylabel("mean drop of p(true class)")
    n = len(result.probability)
    ax.set_title(f"all {result.probability.numel():,} occluder positions of {n} images", fontsize=9)
    fig.tight_layout()
    return fig
