"""Fig. 9's curves: the mean as a line, one standard deviation shaded, in percent."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from zfcourse.figures.fig9 import draw_curve  # noqa: E402
from zfcourse.transfer import Curve  # noqa: E402


def test_the_line_is_the_mean_in_percent_and_the_band_one_std():
    curve = Curve([1, 5], torch.tensor([[0.2, 0.4], [0.6, 0.6]]), "probe")
    fig, ax = plt.subplots()
    draw_curve(curve, ax)
    (line,) = ax.get_lines()
    assert line.get_label() == "probe"
    assert abs(line.get_ydata() - [30.0, 60.0]).max() < 1e-4
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    spread = 100 * float(torch.tensor([0.2, 0.4]).std())          # 14.1 points at one shot, 0 at five
    assert abs(band.min() - (30 - spread)) < 1e-4 and abs(band.max() - 60) < 1e-4
    plt.close(fig)
