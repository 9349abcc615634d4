"""Interactive pickers for the chapters (ipywidgets).

Each explorer draws with matplotlib into an Output widget, so the same code
gives the interactive view in Jupyter or Colab and, when the notebook is
executed for the website, a static first view.
"""
from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import display

from . import models
from .plot import to_rgb


def show_in(out: W.Output, fig) -> None:
    """Replace what an Output widget shows with a matplotlib figure."""
    out.clear_output(wait=True)
    with out:
        display(fig)
        plt.close(fig)  # shown once, through the Output widget, not again by the inline backend


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


def feature_map_explorer(world, images: torch.Tensor, layer: str = "conv1", channel: int | None = None):
    """Pickers for image, layer and channel; the channel starts at the strongest one."""
    conv_layers = [n for n in models.layer_names(world.model) if not n.startswith("fc")]
    if layer not in conv_layers:
        raise KeyError(f"unknown layer {layer!r}; valid: {', '.join(conv_layers)}")
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
    box = W.VBox([W.HBox([image_w, layer_w, channel_w]), out])
    display(box)
    return box
