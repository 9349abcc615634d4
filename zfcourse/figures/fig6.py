"""The paper's Fig. 6: what the first layer learns (Sec. 4.1), from :mod:`zfcourse.filters`
and :mod:`zfcourse.aliasing`: the radial power spectrum of each network's conv1 filters,
the RMS of each filter with and without renormalisation, and the measures as a table."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import nn

from .. import filters
from ..aliasing import Aliasing
from .tables import Table, table

__all__ = ["spectra", "rms_histogram", "band_table"]


def spectra(nets: dict[str, nn.Module], layer: str = "conv1", noise_kernel: int = 7, seed: int = 0):
    """Each network's mean radial power spectrum of ``layer`` (one line per network), beside
    that of white-noise filters of ``noise_kernel`` taps, with the low | mid | high bands."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, model in nets.items():
        freq = filters.frequency_content(model, layer)
        ax.plot(freq.radii, freq.mean_spectrum, marker="o", ms=3, label=name)
    noise = torch.randn(256, 3, noise_kernel, noise_kernel, generator=torch.Generator().manual_seed(seed))
    freq = filters.frequency_content(noise)
    ax.plot(freq.radii, freq.mean_spectrum, color="grey", ls="--",
            label=f"white-noise {noise_kernel}x{noise_kernel} filters")
    for edge in freq.bands:
        ax.axvline(edge, color="k", lw=0.5)
    ax.set_xlabel("frequency (fraction of Nyquist)")
    ax.set_ylabel("share of a filter's power per ring")
    ax.set_title(f"{layer}: mean radial power spectrum (low | mid | high)", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def rms_histogram(rms: dict[str, torch.Tensor], radius: float, layer: str = "conv1"):
    """Histograms of per-filter RMS (``{label: [C]}``), with the renormalisation ``radius``."""
    fig, ax = plt.subplots(figsize=(6, 3))
    top = max(float(r.max()) for r in rms.values())
    bins = torch.linspace(0, top * 1.05, 40).numpy()
    for label, r in rms.items():
        ax.hist(r.cpu().numpy(), bins=bins, alpha=0.6, label=label)
    ax.axvline(radius, color="k", lw=1, ls="--")
    ax.set_title(f"{layer}: RMS of each filter after training", fontsize=10)
    ax.set_xlabel("filter RMS")
    ax.set_ylabel("filters")
    ax.legend(fontsize=8)
    return fig


def band_table(rows: list[dict], folded: dict[str, Aliasing] | None = None, caption: str | None = None) -> Table:
    """The rows of :func:`zfcourse.filters.filter_table` as a table: each network's layer
    shape, dead-filter share and band shares, and with ``folded`` (``{network: Aliasing}``)
    the mean share of filter power its stride folds back."""
    header = ["network", "filters", "dead", "low", "mid", "high"]
    body = [[r["model"], f"{r['kernel']}x{r['kernel']} at stride {r['stride']}", f"{r['dead']:.0%}",
             *(f"{r[band]:.2f}" for band in ("low", "mid", "high"))] for r in rows]
    if folded is not None:
        header.append("power folded back")
        for cells, r in zip(body, rows):
            cells.append(f"{folded[r['model']].mean():.0%}")
    return table(body, header=header, caption=caption)
