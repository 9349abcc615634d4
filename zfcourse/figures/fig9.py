"""The paper's Fig. 9: accuracy against the number of training images per class (Sec. 5.1),
drawn from :class:`zfcourse.transfer.Curve`."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..transfer import Curve

__all__ = ["draw_curve"]


def draw_curve(curve: Curve, ax=None, **kwargs):
    """The mean over draws as a line, one standard deviation either side shaded; in percent."""
    ax = ax or plt.gca()
    mean, std = 100 * curve.mean.numpy(), 100 * curve.std.numpy()
    (line,) = ax.plot(curve.shots, mean, marker="o", label=curve.label, **kwargs)
    ax.fill_between(curve.shots, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    return ax
