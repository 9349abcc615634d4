"""Fig. 6's figures: one spectrum per network beside white noise, one histogram per RMS set."""
import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from tests.helpers import seeded  # noqa: E402
from zfcourse import models  # noqa: E402
from zfcourse.figures import fig6  # noqa: E402


def test_one_line_per_network_and_one_for_noise():
    nets = {"a": seeded(lambda: models.mini_alexnet(4)), "z": seeded(lambda: models.mini_zfnet(4))}
    ax = fig6.spectra(nets).axes[0]
    assert [line.get_label() for line in ax.get_lines()][:3] == ["a", "z", "white-noise 7x7 filters"]


def test_one_histogram_per_set_and_the_radius():
    ax = fig6.rms_histogram({"no cap": torch.rand(8), "cap": torch.rand(8) / 2}, 0.3).axes[0]
    assert len(ax.containers) == 2 and ax.get_lines()[0].get_xdata()[0] == 0.3


def test_band_table_has_one_row_per_network_and_the_folded_share():
    from zfcourse import aliasing, filters
    nets = {"a": seeded(lambda: models.mini_alexnet(4)), "z": seeded(lambda: models.mini_zfnet(4))}
    rows = filters.filter_table(nets, torch.randn(4, 3, 64, 64))
    folded = {name: aliasing.aliased_share(m) for name, m in nets.items()}
    t = fig6.band_table(rows, folded, caption="conv1")
    assert [r[:2] for r in t.rows] == [["a", "11x11 at stride 4"], ["z", "7x7 at stride 2"]]
    assert t.header[-1] == "power folded back" and t.rows[0][-1] == f"{folded['a'].mean():.0%}"
    assert t.rows[1][3:6] == [f"{rows[1][b]:.2f}" for b in ("low", "mid", "high")]
    assert len(fig6.band_table(rows).header) == 6
