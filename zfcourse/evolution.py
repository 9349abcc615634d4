"""Feature evolution during training (Sec. 4, Fig. 4).

Fig. 4 of the paper shows, for a few feature maps of each layer, "the strongest
activation (across all training examples) within a given feature map projected
back to pixel space" after epochs 1, 2, 5, 10, 20, 30, 40 and 64. For snapshot
``e`` of the weights and channel ``c`` of ``layer`` that is

    n* = argmax_n max_{h,w} a_e[n, c, h, w],     p = project_e(x[n*], layer, c)

with the deconvnet of :func:`zfcourse.deconv.project` run on the snapshot's own
weights: both the chosen image and its projection change from epoch to epoch.
The projection is cropped to the unit's receptive field, as in the figure.
:func:`evolution` computes the grid; :func:`zfcourse.figures.fig4.fig4` draws it
(units in rows, epochs in columns) and
:func:`zfcourse.explorers.evolution_explorer` flips through the epochs.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from . import deconv, receptive
from .models import activations, layer_names

__all__ = ["Evolution", "strongest_units", "evolution"]


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
            projections[j][i] = receptive.crop_patches(net, p.cpu(), layer, torch.tensor([[h, w]]))[0]
            chosen[i, j] = n
    return Evolution(epochs, units, projections, chosen)
