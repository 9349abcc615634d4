"""Interactive pickers of the deconvnet chapters (ipywidgets), drawn as in :mod:`zfcourse.widgets`:
matplotlib figures shown through an Output widget, so that Jupyter and Colab get the
interactive view and an executed notebook a first, static one.

* :func:`pooling_explorer`: move a bright pixel over a small array and watch which windows
  pick it as their switch, and what unpooling by adding and by overwriting gives back.
* :func:`projection_explorer`: pick an image, a layer, a channel and a position (default:
  the channel's strongest) and see the unit's deconvnet, guided and gradient projections.
"""
from __future__ import annotations

import ipywidgets as W
import torch
from IPython.display import display

from . import deconv, models, receptive
from .viz_deconv import pool_unpool, show_pooling, show_projections
from .widgets import show_in

__all__ = ["pooling_array", "pooling_explorer", "projection_explorer"]


def pooling_array(row: int, col: int, size: int = 7, seed: int = 0) -> torch.Tensor:
    """A ``size x size`` array of distinct values (no ties for max pooling to break) with one
    bright pixel, larger than all others, at ``(row, col)``."""
    if not (0 <= row < size and 0 <= col < size):
        raise ValueError(f"({row}, {col}) is outside the {size}x{size} array")
    x = torch.randperm(size * size, generator=torch.Generator().manual_seed(seed)).float().view(size, size)
    x[row, col] = size * size + 10
    return x


def pooling_explorer(row: int = 2, col: int = 2, size: int = 7, kernel: int = 3, stride: int = 2):
    """Sliders for the bright pixel's row and column in :func:`pooling_array`; the signal
    coming back is the window's number (1, 2, ...), so every sum can be read off."""
    row_w = W.IntSlider(row, 0, size - 1, description="row")
    col_w = W.IntSlider(col, 0, size - 1, description="column")
    out = W.Output()

    def redraw(_=None):
        x = pooling_array(row_w.value, col_w.value, size)
        n = ((size - kernel) // stride + 1) ** 2
        p = pool_unpool(x, torch.arange(1.0, n + 1), kernel, stride)
        shared = int(p.windows[row_w.value, col_w.value])
        show_in(out, show_pooling(p, f"bright pixel at ({row_w.value}, {col_w.value}): the switch of {shared} window"
                                   + ("s" if shared != 1 else "")))

    row_w.observe(redraw, "value")
    col_w.observe(redraw, "value")
    redraw()
    box = W.VBox([W.HBox([row_w, col_w]), out])
    display(box)
    return box


def projection_explorer(world, images: torch.Tensor, layer: str = "conv5", rules=deconv.RULES):
    """Pickers for image, layer, channel and position; the channel starts at the image's
    strongest, the position at the channel's strongest (and returns there when the
    channel changes). Beside the image and the unit's receptive field: its projection
    under each rule."""
    spatial = [n for n in models.layer_names(world.model) if not n.startswith("fc")]
    if layer not in spatial:
        raise KeyError(f"unknown layer {layer!r}; valid: {', '.join(spatial)}")
    image_w = W.IntSlider(0, 0, len(images) - 1, description="image")
    layer_w = W.Dropdown(options=spatial, value=layer, description="layer")
    channel_w = W.IntSlider(0, 0, 1, description="channel")
    row_w = W.IntSlider(0, 0, 1, description="row")
    col_w = W.IntSlider(0, 0, 1, description="column")
    out = W.Output()
    state = {}

    def acts():
        x = images[image_w.value: image_w.value + 1].to(world.device)
        return x, models.activations(world.model, x, layer_w.value)[layer_w.value][0]

    def quietly(widget, **values):  # set a picker without a redraw per trait it changes
        for w in (channel_w, row_w, col_w):
            w.unobserve_all("value")
        for k, v in values.items():
            setattr(widget, k, v)
        channel_w.observe(on_channel, "value")
        row_w.observe(redraw, "value")
        col_w.observe(redraw, "value")

    def on_image_or_layer(_=None):
        x, a = acts()
        state.update(x=x, a=a)
        quietly(channel_w, max=a.shape[0] - 1, value=int(a.flatten(1).max(1).values.argmax()))
        on_channel()

    def on_channel(_=None):
        a = state["a"][channel_w.value]
        h, w = divmod(int(a.flatten().argmax()), a.shape[1])
        quietly(row_w, max=a.shape[0] - 1, value=h)
        quietly(col_w, max=a.shape[1] - 1, value=w)
        redraw()

    def redraw(_=None):
        x, c, pos = state["x"], channel_w.value, (row_w.value, col_w.value)
        projections = {r: deconv.project(world.model, x, layer_w.value, c, pos, rule=r)[0] for r in rules}
        box = receptive.patch_box(world.model, layer_w.value, pos)
        value = float(state["a"][c][pos])
        label = f"{layer_w.value}, channel {c}, ({pos[0]}, {pos[1]})\nactivation {value:.3g}"
        show_in(out, show_projections(world.denormalize(x[0]), [(label, projections, box)]))

    image_w.observe(on_image_or_layer, "value")
    layer_w.observe(on_image_or_layer, "value")
    on_image_or_layer()
    box = W.VBox([W.HBox([image_w, layer_w]), W.HBox([channel_w, row_w, col_w]), out])
    display(box)
    return box
