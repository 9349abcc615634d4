"""The paper's Fig. 4: feature evolution during training (Sec. 4), drawn from
:class:`zfcourse.evolution.Evolution`. Projections on their own signed scale, zero
at mid-grey, as the other figures show them."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..evolution import Evolution
from .common import show_image, signed_scale

__all__ = ["fig4", "one_epoch"]


def _draw(ax, p: torch.Tensor, title: str | None = None) -> None:
    show_image(ax, signed_scale(p[None])[0], title, fontsize=7)


def fig4(evo: Evolution, title: str | None = None, size: float = 1.1):
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


def one_epoch(evolutions: dict[str, Evolution], i: int, size: float = 1.3):
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
