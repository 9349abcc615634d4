"""Fig. 5: the transformed images beside the invariance curves."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from zfcourse.figures.common import to_rgb  # noqa: E402
from zfcourse.figures.fig5 import transformations  # noqa: E402
from zfcourse.invariance import transform  # noqa: E402


def test_one_row_per_transformation_the_original_first():
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    shown = {"translate_y": [-4, 4], "rotate": [90]}
    fig = transformations(image, shown, fill=0.5, denormalize=lambda x: x / 2, title="t")
    drawn = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in drawn] == ["translate_y 0", "translate_y -4", "translate_y 4",
                                                "rotate 0", "rotate 90"]
    assert len(fig.axes) == 6                                  # two rows of three, one left empty
    np.testing.assert_allclose(drawn[0].images[0].get_array(), to_rgb(image / 2))
    moved = transform(image[None], "translate_y", 4, fill=0.5)[0]
    np.testing.assert_allclose(drawn[2].images[0].get_array(), to_rgb(moved / 2))
    np.testing.assert_allclose(drawn[4].images[0].get_array(), to_rgb(torch.rot90(image, 1, (1, 2)) / 2),
                               atol=1e-6)
    plt.close(fig)
