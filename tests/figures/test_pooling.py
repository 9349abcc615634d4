"""The pooling figure: switches and both unpoolings of the toy example."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import torch  # noqa: E402

from zfcourse.figures.pooling import show_pooling  # noqa: E402
from zfcourse.reverse import pool_unpool, pooling_array  # noqa: E402


def test_four_panels_and_a_title():
    fig = show_pooling(pool_unpool(pooling_array(2, 2)), title="t")
    assert len(fig.axes) == 4 and fig._suptitle.get_text() == "t"
    plt.close(fig)


def test_the_html_twin_marks_switches_and_lost_values():
    from zfcourse.figures.pooling import pooling_html
    page = pooling_html(pool_unpool(pooling_array(2, 2), torch.arange(1.0, 10.0)), title="t")
    assert page.count("<table") == 4 and page.count("<sup>4</sup>") == 1
    assert "sum 45" in page and "font-weight:bold" in page     # 1 + ... + 9 kept; overwritten ones lost
