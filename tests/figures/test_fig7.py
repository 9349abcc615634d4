"""Fig. 7's companion: the mean drop by the share of the occluder on the object."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from zfcourse.figures.fig7 import overlap_bars  # noqa: E402
from zfcourse.occlusion import OVERLAP_LABELS, drop_by_overlap, occlusion_map  # noqa: E402


def test_one_bar_per_share_as_high_as_the_mean_drop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 14 * 14, 3)).eval()
    images = torch.rand(2, 3, 16, 16)
    result = occlusion_map(model, images, target=0, window=4, stride=2)
    masks = torch.zeros(2, 16, 16)
    masks[:, 2:12, 3:13] = 1
    fig = overlap_bars(result, masks)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx(drop_by_overlap(result, masks).tolist())
    assert [t.get_text() for t in ax.get_xticklabels()] == list(OVERLAP_LABELS)
    assert ax.get_title() == "all 98 occluder positions of 2 images"
    plt.close(fig)
    with pytest.raises(ValueError, match="labels"):
        overlap_bars(result, masks, labels=["a", "b"])
