"""Feature evolution during training (Sec. 4.1, Fig. 4).

Fig. 4 of the paper shows, for a few feature maps of each layer, "the strongest
activation (across all training examples) within a given feature map projected
back to pixel space" after epochs 1, 2, 5, 10, 20, 30, 40 and 64. For snapshot
``e`` of the weights and channel ``c`` of ``layer`` that is

    n* = argmax_n max_{h,w} a_e[n, c, h, w],     p = project_e(x[n*], layer, c)

with the deconvnet of :func:`zfcourse.deconv.project` run on the snapshot's own
weights: both the chosen image and its projection change from epoch to epoch.
The projection is cropped to the unit's receptive field, as in the figure.
:func:`evolution` computes the grid; :func:`evolution_figure` draws it (units in
rows, epochs in columns) and :func:`evolution_explorer` flips through the epochs
with a slider.
"""
from __future__ import annotations

import copy

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from torch import nn

from . import deconv, receptive
from .models import activations, layer_names
from .plot import to_rgb
from .topk_plots import signed_scale
from .widgets import show_in

__all__ = ["Evolution", "strongest_units", "evolution", "evolution_figure", "evolution_explorer"]


class Evolution:
    """For units ``(layer, channel)`` at ``epochs``: ``projections``, one tensor
    ``[E, 3, s, s]`` per unit (``s`` its receptive field), and which image
    ``[E, U]`` each projection came from."""

    def __init__(self, epochs, units, projections, images):
        self.epochs, self.units, self.projections, self.images = list(epochs), list(units), projections, images

    def __repr__(self) -> str:
        return f"Evolution(epochs={self.epochs}, units={len(self.units)})"


def _check_layers(model: nn.Module, layers) -> None:
    valid = [n for n in layer_names(model) if n.startswith("conv")]
    for layer in layers:
        if layer not in valid:
            raise ValueError(f"unknown conv layer {layer!r}; valid: {', '.join(valid)}")


@torch.no_grad()
def strongest_units(model: nn.Module, images: torch.Tensor, layers, per_layer: int = 2) -> list[tuple[str, int]]:
    """The ``per_layer`` channels of each layer whose strongest activation over
    ``images`` is largest: units that are clearly alive at the end of training."""
    _check_layers(model, layers)
    acts = activations(model, images, list(layers))
    units = []
    for layer in layers:
        peak = acts[layer].amax(dim=(0, 2, 3))
        units += [(layer, int(c)) for c in peak.argsort(descending=True)[:per_layer]]
    return units


def evolution(model: nn.Module, snapshots: dict[int, dict], images: torch.Tensor, units,
              rule: str = "deconvnet") -> Evolution:
    """For every snapshot (epoch -> state dict of ``model``'s architecture) and unit
    ``(layer, channel)``, the strongest activation over ``images`` (model input
    ``[N, 3, H, W]``) projected to pixel space and cropped to its receptive field.
    ``model`` itself is left as it is (a copy takes the snapshots' weights)."""
    _check_layers(model, {layer for layer, _ in units})
    net = copy.deepcopy(model).eval()
    device = images.device
    epochs = sorted(snapshots)
    projections = [torch.zeros(len(epochs), 3, *(2 * [receptive.receptive_field(net, layer)[0]])) for layer, _ in units]
    chosen = torch.zeros(len(epochs), len(units), dtype=torch.long)
    layers = sorted({layer for layer, _ in units})
    for i, epoch in enumerate(epochs):
        net.load_state_dict(snapshots[epoch])
        net.to(device)
        with torch.no_grad():
            acts = activations(net, images, layers)
        for j, (layer, channel) in enumerate(units):
            a = acts[layer][:, channel]
            flat = a.flatten(1).max(1)
            n = int(flat.values.argmax())
            h, w = divmod(int(a[n].flatten().argmax()), a.shape[-1])
            p = deconv.project(net, images[n:n + 1], layer, channel, (h, w), rule=rule)
            projections[j][i] = receptive.crop_patches(net, layer, p.cpu(), torch.tensor([[h, w]]))[0]
            chosen[i, j] = n
    return Evolution(epochs, units, projections, chosen)


def _draw(ax, p: torch.Tensor, title: str | None = None) -> None:
    """A projection stretched on its own, zero at mid-grey (as the other chapters show them)."""
    ax.imshow(to_rgb(signed_scale(p[None])[0]), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def evolution_figure(evo: Evolution, title: str | None = None, size: float = 1.1):
    """Units in rows, epochs in columns (the layout of Fig. 4, transposed)."""
    E, U = len(evo.epochs), len(evo.units)
    fig, axes = plt.subplots(U, E, figsize=(size * E + 1.2, size * U + 0.5), squeeze=False)
    for j, (layer, channel) in enumerate(evo.units):
        for i, epoch in enumerate(evo.epochs):
            ax = axes[j, i]
            _draw(ax, evo.projections[j][i])
            if j == 0:
                ax.set_title(f"epoch {epoch}", fontsize=9)
            if i == 0:
                ax.set_ylabel(f"{layer}\nch {channel}", fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _one_epoch(evolutions: dict[str, Evolution], i: int, size: float = 1.3):
    names = list(evolutions)
    U = max(len(e.units) for e in evolutions.values())
    fig, axes = plt.subplots(len(names), U, figsize=(size * U + 1.2, size * len(names) + 0.6), squeeze=False)
    for r, name in enumerate(names):
        evo = evolutions[name]
        for j in range(U):
            ax = axes[r, j]
            if j >= len(evo.units):
                ax.axis("off")
                continue
            layer, channel = evo.units[j]
            _draw(ax, evo.projections[j][i], f"{layer} ch {channel}")
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(f"after epoch {next(iter(evolutions.values())).epochs[i]}", fontsize=10)
    fig.tight_layout()
    return fig


def evolution_explorer(evolutions: dict[str, Evolution]):
    """A slider through the epochs showing every unit of each network (all
    ``Evolution`` objects must share their epochs)."""
    epochs = {tuple(e.epochs) for e in evolutions.values()}
    if len(epochs) != 1:
        raise ValueError(f"the evolutions must have the same epochs, got {sorted(epochs)}")
    (epochs,) = epochs
    slider = W.SelectionSlider(options=[(str(e), i) for i, e in enumerate(epochs)], value=len(epochs) - 1,
                               description="epoch")
    out = W.Output()

    def redraw(_=None):
        show_in(out, _one_epoch(evolutions, slider.value))

    slider.observe(redraw, names="value")
    redraw()
    return W.VBox([slider, out])
