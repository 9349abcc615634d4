"""The paper's Fig. 5, columns 2-4: invariance curves (Sec. 4.3), drawn from
:class:`zfcourse.invariance.Invariance`."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..invariance import IDENTITY, Invariance, transform
from .common import categorical, image_grid

__all__ = ["fig5", "transformations"]

_AXIS = {"translate_y": "vertical shift (pixels, + down)", "translate_x": "horizontal shift (pixels, + right)",
         "scale": "scale factor", "rotate": "rotation (degrees, counter-clockwise)"}


def fig5(curves: list[Invariance], labels: list[str] | None = None, relative: bool = True, size: float = 2.6):
    """The paper's Fig. 5, columns 2-4: one row per transformation, one column per layer (the
    feature distance) and a last one for the probability of the target class; one line per image,
    and their mean in black.

    ``labels``: a name per image for the legend; ``relative``: distances divided by the
    untransformed feature's norm (one scale for all layers) rather than raw Euclidean ones.
    """
    layers = curves[0].layers
    fig, axes = plt.subplots(len(curves), len(layers) + 1, figsize=(size * (len(layers) + 1) + 1.5, size * len(curves)),
                             squeeze=False)
    for row, c in zip(axes, curves):
        x = c.values.numpy()
        for ax, layer in zip(row, layers):
            y = c.relative(layer) if relative else c.distance[layer]
            ax.set_prop_cycle(color=categorical(y.shape[1]))
            ax.plot(x, y.numpy(), marker=".", lw=1, alpha=0.8)
            ax.plot(x, y.mean(1).numpy(), color="black", lw=2)
            ax.set_title(layer, fontsize=11)
            ax.set_ylabel("distance / norm" if relative else "Euclidean distance", fontsize=10)
            if relative:
                ax.set_ylim(bottom=0)
        row[-1].set_prop_cycle(color=categorical(c.probability.shape[1]))
        row[-1].plot(x, c.probability.numpy(), marker=".", lw=1, alpha=0.8)
        row[-1].plot(x, c.probability.mean(1).numpy(), color="black", lw=2)
        row[-1].set_ylim(-0.03, 1.03)
        row[-1].set_title("p(true class)", fontsize=11)
        for ax in row:
            ax.set_xlabel(_AXIS[c.kind], fontsize=10)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    if labels is not None:
        axes[0, -1].legend(list(labels) + ["mean"], fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                           frameon=False)
    fig.tight_layout()
    return fig


def transformations(image, shown: dict, fill=0.0, denormalize=None, size: float = 1.5,
                    title: str | None = None):
    """The paper's Fig. 5, column 1: one image as the curves transform it, one row per
    transformation, the untransformed image first.

    ``image``: ``[C, H, W]`` in model-input space; ``shown``: ``{kind: [values]}`` (see
    :data:`zfcourse.invariance.TRANSFORMS`); ``fill``: the border's colour, as for
    :func:`zfcourse.invariance.transform`; ``denormalize``: model input to ``[0, 1]``
    (e.g. ``world.denormalize``; None: shown as it is).
    """
    steps = [(kind, v) for kind, values in shown.items() for v in [IDENTITY[kind]] + list(values)]
    tiles = [transform(image[None], kind, v, fill=fill)[0] for kind, v in steps]
    if denormalize is not None:
        tiles = [denormalize(t) for t in tiles]
    ncols = 1 + max(len(values) for values in shown.values())
    return image_grid(tiles, titles=[f"{kind} {v:g}" for kind, v in steps], ncols=ncols, size=size,
                      title=title)
