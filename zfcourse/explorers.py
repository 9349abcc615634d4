"""Every explorer of the course (ipywidgets): pick a layer, a unit, an image, an epoch.

In Jupyter and Colab each explorer is live: it draws with matplotlib into an Output
widget whenever a picker moves. A static page has no kernel to redraw, so when the book
is built for the website (:func:`on_static_site`) each explorer renders its
*kernel-free twin* instead: a small set of views computed in advance (PNG images in
nested ``Stack`` widgets) and pickers tied to them by ``jslink``, so that moving a picker
in the browser switches the view without Python.

* :func:`feature_map_explorer` (chapter 1): one channel of one image's feature map.
* :func:`pooling_explorer` (chapter 2): move a bright pixel over a small array and watch
  which windows pick it as their switch, and what unpooling by adding and by
  overwriting gives back.
* :func:`projection_explorer` (chapter 3): a unit's deconvnet, guided and gradient
  projections.
* :func:`top9_explorer` (chapter 4): any channel's top 9, as in Fig. 2.
* :func:`evolution_explorer` (chapter 5): the projections of Fig. 4, epoch by epoch.
"""
from __future__ import annotations

import io
from typing import Callable, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from . import deconv, models, receptive
from .evolution import Evolution
from .figures.common import show_feature_map
from .figures.fig2 import channel_figure
from .figures.fig4 import one_epoch
from .figures.pooling import pooling_html, show_pooling
from .figures.projections import show_projections
from .infra.progress import on_static_site
from .reverse import pool_unpool, pooling_array
from .topk import TopK

__all__ = ["show_in", "on_static_site", "linked_views", "feature_map_explorer", "pooling_explorer",
           "projection_explorer", "top9_explorer", "evolution_explorer"]

DPI = 48                 # of the twins' pictures: legible at page width, small in the page's state


def _picture(fig, dpi: int = DPI) -> W.Image:
    """A matplotlib figure as an Image widget, the figure closed. JPEG: the views are mostly
    pictures and feature maps, which PNG compresses three to five times less well."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=dpi, pil_kwargs={"quality": 85})
    plt.close(fig)
    return W.Image(value=buffer.getvalue(), format="jpeg")


def linked_views(views, pickers: Sequence[tuple[W.Widget, str]]) -> W.Widget:
    """Precomputed ``views`` (nested lists, one level per picker, of widgets) shown one at a
    time: level ``i`` is a ``Stack`` whose ``selected_index`` follows picker ``i``'s trait
    (``(widget, "index")`` for a dropdown or selection slider, ``(widget, "value")`` for
    an IntSlider from 0) through ``jslink``, in the browser as well as in a kernel."""
    (picker, trait), rest = pickers[0], pickers[1:]
    children = [linked_views(v, rest) for v in views] if rest else list(views)
    stack = W.Stack(children, selected_index=getattr(picker, trait))
    W.jslink((picker, trait), (stack, "selected_index"))
    return stack


def _note(text: str) -> W.HTML:
    return W.HTML(f"<small><i>{text}</i></small>")


def _shown(box: W.Widget) -> W.Widget:
    display(box)
    return box


def _live(controls: list, out: W.Output, more: list | None = None) -> W.Widget:
    """A live explorer, shown: its controls in a row (``more`` in a second) above ``out``."""
    return _shown(W.VBox([W.HBox(controls), *([W.HBox(more)] if more else []), out]))


def show_in(out: W.Output, fig) -> None:
    """Replace what an Output widget shows with a matplotlib figure."""
    out.clear_output(wait=True)
    with out:
        display(fig)
        plt.close(fig)  # shown once, through the Output widget, not again by the inline backend


def feature_map_explorer(world, images: torch.Tensor, layer: str = "conv1", channel: int | None = None,
                         twin_images: int = 2, twin_channels: int = 4):
    """Pickers for image, layer and channel; the channel starts at the strongest one.
    The website's twin: the first ``twin_images`` images, every layer, and each image's
    ``twin_channels`` strongest channels of the layer."""
    conv_layers = [n for n in models.layer_names(world.model) if not n.startswith("fc")]
    if layer not in conv_layers:
        raise KeyError(f"unknown layer {layer!r}; valid: {', '.join(conv_layers)}")
    if on_static_site():
        return _feature_map_twin(world, images[:twin_images], conv_layers, layer, twin_channels)
    layer_w = W.Dropdown(options=conv_layers, value=layer, description="layer")
    image_w = W.IntSlider(0, 0, len(images) - 1, description="image")
    channel_w = W.IntSlider(0, 0, 1, description="channel")
    out = W.Output()

    def strongest(layer_name, index):
        a = models.activations(world.model, images[index: index + 1].to(world.device), layer_name)[layer_name]
        return a, int(a[0].flatten(1).max(1).values.argmax())

    def on_layer(change=None):
        acts, best = strongest(layer_w.value, image_w.value)
        channel_w.unobserve(redraw, "value")  # one redraw per change, not one per trait
        channel_w.max = acts.shape[1] - 1
        channel_w.value = best if channel is None or change is not None else channel
        channel_w.observe(redraw, "value")
        redraw()

    def redraw(_=None):
        show_in(out, show_feature_map(world, images, layer_w.value, channel_w.value, image_w.value))

    layer_w.observe(on_layer, "value")
    image_w.observe(on_layer, "value")
    channel_w.observe(redraw, "value")
    on_layer()
    return _live([image_w, layer_w, channel_w], out)


def _pooling(row: int, col: int, size: int, kernel: int, stride: int):
    """The pooling of :func:`pooling_array` with its bright pixel at ``(row, col)``, and a title."""
    x = pooling_array(row, col, size)
    n = ((size - kernel) // stride + 1) ** 2
    p = pool_unpool(x, torch.arange(1.0, n + 1), kernel, stride)
    shared = int(p.windows[row, col])
    windows = "window" if shared == 1 else "windows"
    return p, f"bright pixel at ({row}, {col}): the switch of {shared} {windows}"


def pooling_explorer(row: int = 2, col: int = 2, size: int = 7, kernel: int = 3, stride: int = 2):
    """Sliders for the bright pixel's row and column in :func:`pooling_array`; the signal
    coming back is the window's number (1, 2, ...), so every sum can be read off. The
    website's twin holds every position."""
    row_w = W.IntSlider(row, 0, size - 1, description="row")
    col_w = W.IntSlider(col, 0, size - 1, description="column")
    if on_static_site():
        views = [[W.HTML(pooling_html(*_pooling(r, c, size, kernel, stride))) for c in range(size)]
                 for r in range(size)]
        return _shown(W.VBox([W.HBox([row_w, col_w]), linked_views(views, [(row_w, "value"), (col_w, "value")])]))
    out = W.Output()

    def redraw(_=None):
        show_in(out, show_pooling(*_pooling(row_w.value, col_w.value, size, kernel, stride)))

    row_w.observe(redraw, "value")
    col_w.observe(redraw, "value")
    redraw()
    return _live([row_w, col_w], out)


def _projection_figure(world, x: torch.Tensor, layer: str, channel: int, position, value: float, rules):
    projections = {r: deconv.project(world.model, x, layer, channel, position, rule=r)[0] for r in rules}
    box = receptive.patch_box(world.model, layer, position)
    label = f"{layer}, channel {channel}, ({position[0]}, {position[1]})\nactivation {value:.3g}"
    return show_projections(world.denormalize(x[0]), [(label, projections, box)])


def _strongest_unit(world, x: torch.Tensor, layer: str) -> tuple[int, tuple[int, int], float]:
    a = models.activations(world.model, x, layer)[layer][0]
    c = int(a.flatten(1).max(1).values.argmax())
    h, w = divmod(int(a[c].flatten().argmax()), a.shape[2])
    return c, (h, w), float(a[c, h, w])


def projection_explorer(world, images: torch.Tensor, layer: str = "conv5", rules=deconv.RULES,
                        twin_images: int = 3):
    """Pickers for image, layer, channel and position; the channel starts at the image's
    strongest, the position at the channel's strongest (and returns there when the
    channel changes). Beside the image and the unit's receptive field: its projection
    under each rule. The website's twin: the first ``twin_images`` images and every
    layer, at each image's strongest unit of the layer."""
    spatial = [n for n in models.layer_names(world.model) if not n.startswith("fc")]
    if layer not in spatial:
        raise KeyError(f"unknown layer {layer!r}; valid: {', '.join(spatial)}")
    if on_static_site():
        return _projection_twin(world, images[:twin_images], spatial, layer, rules)
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
        show_in(out, _projection_figure(world, x, layer_w.value, c, pos, float(state["a"][c][pos]), rules))

    image_w.observe(on_image_or_layer, "value")
    layer_w.observe(on_image_or_layer, "value")
    on_image_or_layer()
    return _live([image_w, layer_w], out, [channel_w, row_w, col_w])


def top9_explorer(world, tops: dict[str, TopK], images, layer: str | None = None, channel: int = 0,
                  captions: Callable[[int], str] | None = None, twin_channels: int = 4):
    """A layer picker and a channel slider over precomputed searches ``tops``; draws
    :func:`channel_figure` for the chosen channel. The website's twin: for every layer,
    ``twin_channels`` channels spread evenly over the layer (``channel`` among them for
    ``layer``); the site's atlas has every channel."""
    names = [n for n in models.layer_names(world.model) if n in tops]
    layer = layer or names[0]
    if layer not in tops:
        raise KeyError(f"no search for layer {layer!r}; searched: {', '.join(names)}")
    if on_static_site():
        return _top9_twin(world, tops, images, names, layer, channel, captions, twin_channels)
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
    return _live([layer_w, channel_w], out)


def evolution_explorer(evolutions: dict[str, Evolution]):
    """A slider through the epochs showing every unit of each network (all
    ``Evolution`` objects must share their epochs)."""
    epochs = {tuple(e.epochs) for e in evolutions.values()}
    if len(epochs) != 1:
        raise ValueError(f"the evolutions must have the same epochs, got {sorted(epochs)}")
    (epochs,) = epochs
    slider = W.SelectionSlider(options=[(str(e), i) for i, e in enumerate(epochs)], value=len(epochs) - 1,
                               description="epoch")
    if on_static_site():
        views = [_picture(one_epoch(evolutions, i)) for i in range(len(epochs))]
        return W.VBox([slider, linked_views(views, [(slider, "index")])])
    out = W.Output()

    def redraw(_=None):
        show_in(out, one_epoch(evolutions, slider.value))

    slider.observe(redraw, names="value")
    redraw()
    return W.VBox([slider, out])


# --------------------------------------------------------------------------- twins

def _feature_map_twin(world, images, layers, layer, per_image):
    image_w = W.IntSlider(0, 0, len(images) - 1, description="image")
    layer_w = W.Dropdown(options=layers, value=layer, description="layer")
    rank_w = W.IntSlider(0, 0, per_image - 1, description="rank")
    views = []
    with torch.no_grad():
        acts = models.activations(world.model, images.to(world.device), layers)
    for name in layers:
        per_layer = []
        for i in range(len(images)):
            peaks = acts[name][i].flatten(1).amax(1)
            strongest = peaks.argsort(descending=True)[:per_image].tolist()
            per_layer.append([_picture(show_feature_map(world, images, name, c, i, acts[name][i:i + 1]))
                              for c in strongest])
        views.append(per_layer)
    pickers = [(layer_w, "index"), (image_w, "value"), (rank_w, "value")]
    note = _note(f"On this page: the first {len(images)} images and each image's {per_image} strongest "
                 "channels (rank 0: the strongest). Run the chapter for every channel.")
    return _shown(W.VBox([W.HBox([image_w, layer_w, rank_w]), linked_views(views, pickers), note]))


def _projection_twin(world, images, layers, layer, rules):
    image_w = W.IntSlider(0, 0, len(images) - 1, description="image")
    layer_w = W.Dropdown(options=layers, value=layer, description="layer")
    views = []
    for name in layers:
        per_layer = []
        for i in range(len(images)):
            x = images[i:i + 1].to(world.device)
            c, position, value = _strongest_unit(world, x, name)
            per_layer.append(_picture(_projection_figure(world, x, name, c, position, value, rules)))
        views.append(per_layer)
    note = _note(f"On this page: the first {len(images)} images, each at its strongest unit of the layer. "
                 "Run the chapter to pick any channel and position.")
    return _shown(W.VBox([W.HBox([image_w, layer_w]),
                          linked_views(views, [(layer_w, "index"), (image_w, "value")]), note]))


def _spread(n: int, k: int, keep: int | None = None) -> list[int]:
    """``k`` of ``0..n-1`` spread evenly, ``keep`` among them."""
    picked = torch.linspace(0, n - 1, min(k, n)).round().long().tolist()
    if keep is not None and keep not in picked:
        picked[min(range(len(picked)), key=lambda j: abs(picked[j] - keep))] = keep
    return sorted(set(picked))


def _top9_twin(world, tops, images, layers, layer, channel, captions, per_layer):
    layer_w = W.Dropdown(options=layers, value=layer, description="layer")
    channels = {name: _spread(tops[name].values.shape[0], per_layer, channel if name == layer else None)
                for name in layers}
    sliders, views = [], []
    for name in layers:
        slider = W.SelectionSlider(options=[(str(c), j) for j, c in enumerate(channels[name])],
                                   description="channel")
        if name == layer:
            slider.index = channels[name].index(channel)
        pictures = [_picture(channel_figure(world, tops[name], images, c, captions), dpi=60)
                    for c in channels[name]]
        sliders.append(slider)
        views.append(W.VBox([slider, linked_views(pictures, [(slider, "index")])]))
    note = _note(f"On this page: {per_layer} channels of each layer. Every channel of every layer is in "
                 "the atlas; run the chapter to pick any channel here.")
    return _shown(W.VBox([layer_w, linked_views(views, [(layer_w, "index")]), note]))
