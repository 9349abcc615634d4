"""The Fig. 4 grid: units in rows, epochs in columns."""
import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from zfcourse import evolution, models  # noqa: E402
from zfcourse.figures.fig4 import fig4  # noqa: E402


def test_one_panel_per_unit_and_epoch():
    torch.manual_seed(0)
    model = models.mini_alexnet(4).eval()
    first = {k: v.clone() for k, v in model.state_dict().items()}
    snaps = {1: first, 3: {k: v + 0.02 * torch.randn_like(v) for k, v in first.items()}}
    evo = evolution.evolution(model, snaps, torch.randn(3, 3, 64, 64), [("conv2", 0), ("conv1", 1)])
    fig = fig4(evo, title="t")
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "epoch 1"
