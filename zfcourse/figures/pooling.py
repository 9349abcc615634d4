"""Max pooling, its switches and the two ways back, drawn on a small array (Sec. 2.1):
unpooling that adds the values of windows sharing a switch (the adjoint) beside
``nn.MaxUnpool2d``, which writes them over one another. The numbers come from
:func:`zfcourse.reverse.pool_unpool`."""
from __future__ import annotations

import html

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import to_hex
from torch import Tensor

from ..reverse import Pooling

__all__ = ["show_pooling", "pooling_html"]


def _grid(ax, values: Tensor, title: str, cmap: str, highlight: Tensor | None = None, fmt: str = "{:g}"):
    ax.imshow(values.numpy(), cmap=cmap, vmin=0, vmax=max(float(values.max()), 1e-9), interpolation="nearest")
    for (r, c), v in zip(torch.cartesian_prod(*map(torch.arange, values.shape)).tolist(), values.flatten().tolist()):
        red = highlight is not None and bool(highlight[r, c])
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=12,
                color="red" if red else ("black" if v > 0.6 * float(values.max()) else "white"),
                fontweight="bold" if red else "normal")
    ax.set_title(title, fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])


def show_pooling(p: Pooling, title: str | None = None):
    """Four panels: the input with its switches ringed (the number of windows that chose
    each), the signal coming back per window, and the two unpoolings; positions where
    ``MaxUnpool2d`` lost a contribution are in red."""
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), gridspec_kw=dict(width_ratios=[7, 3.4, 7, 7]))
    _grid(axes[0], p.x, f"input, {p.kernel}x{p.kernel} windows at stride {p.stride}", "Greys_r", fmt="{:.0f}")
    for (r, c), n in zip(torch.cartesian_prod(*map(torch.arange, p.x.shape)).tolist(), p.windows.flatten().tolist()):
        if n:
            axes[0].add_patch(plt.Circle((c, r), 0.45, fill=False, color="tab:orange" if n == 1 else "red", lw=2))
            axes[0].text(c + 0.42, r - 0.42, f"{n:.0f}", color="red" if n > 1 else "tab:orange", fontsize=10,
                         fontweight="bold", ha="center", va="center",
                         bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none"))
    _grid(axes[1], p.signal, "signal from above\n(one value per window)", "viridis")
    lost = p.windows > 1
    _grid(axes[2], p.added, f"unpool: add (sum {float(p.added.sum()):g})", "viridis", lost)
    _grid(axes[3], p.overwritten, f"MaxUnpool2d: overwrite (sum {float(p.overwritten.sum()):g})", "viridis", lost)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _table(values: Tensor, title: str, cmap: str, marks: Tensor | None = None, lost: Tensor | None = None,
           fmt: str = "{:g}") -> str:
    colours = plt.get_cmap(cmap)
    top = max(float(values.max()), 1e-9)
    rows = []
    for r, row in enumerate(values.tolist()):
        cells = []
        for c, v in enumerate(row):
            style = f"background:{to_hex(colours(v / top))};color:{'black' if v > 0.6 * top else 'white'}"
            n = int(marks[r, c]) if marks is not None else 0
            if n:
                style += f";outline:3px solid {'#e69f00' if n == 1 else '#d00'};outline-offset:-3px"
            if lost is not None and bool(lost[r, c]):
                style += ";color:#d00;font-weight:bold;background:#fff"
            label = fmt.format(v) + (f"<sup>{n}</sup>" if n else "")
            cells.append(f'<td style="{style}">{label}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<figure style="margin:0 8px"><figcaption style="font-size:12px">{html.escape(title)}</figcaption>'
            f'<table style="border-collapse:collapse;font:12px monospace;text-align:center">{"".join(rows)}'
            "</table></figure>")


def pooling_html(p: Pooling, title: str | None = None) -> str:
    """The four panels of :func:`show_pooling` as HTML tables: crisp at any width and a few
    kilobytes each, for the explorer's kernel-free twin. Switches are outlined (orange:
    one window chose it, red: several; the superscript says how many)."""
    lost = p.windows > 1
    panels = [_table(p.x, f"input, {p.kernel}x{p.kernel} windows at stride {p.stride}", "Greys_r",
                     marks=p.windows, fmt="{:.0f}"),
              _table(p.signal, "signal from above (one value per window)", "viridis"),
              _table(p.added, f"unpool: add (sum {float(p.added.sum()):g})", "viridis", lost=lost),
              _table(p.overwritten, f"MaxUnpool2d: overwrite (sum {float(p.overwritten.sum()):g})", "viridis",
                     lost=lost)]
    head = f"<p><b>{html.escape(title)}</b></p>" if title else ""
    return head + '<div style="display:flex;flex-wrap:wrap;align-items:flex-start">' + "".join(panels) + "</div>"
