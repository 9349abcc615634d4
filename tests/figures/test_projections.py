"""Projections beside their image, cropped to the box or whole."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from zfcourse.figures.projections import show_projections


def test_figures_have_one_panel_per_projection():
    image = torch.rand(3, 16, 16)
    proj = {"deconvnet": torch.randn(3, 16, 16), "gradient": torch.zeros(3, 16, 16)}
    fig = show_projections(image, [("a", proj, (2, 2, 8, 8)), ("b", proj, (-4, -4, 30, 30))], crop=True)
    assert len(fig.axes) == 6
    assert fig.axes[1].images[0].get_array().shape[:2] == (6, 6), "cropped to the box"
    assert fig.axes[4].images[0].get_array().shape[:2] == (16, 16), "a box past the border is clipped"
    plt.close(fig)
    fig = show_projections(image, [("a", proj, (2, 2, 8, 8))], crop=True, margin=3)
    assert fig.axes[1].images[0].get_array().shape[:2] == (11, 11), "the box grown by 3, clipped at the top left"
    (rect,) = fig.axes[1].patches
    assert (rect.get_x(), rect.get_y()) == (1.5, 1.5), "the box outlined where it lies in the cut"
    plt.close(fig)
    picture = torch.full((3, 16, 16), 0.25)
    fig = show_projections(torch.rand(2, 3, 16, 16), [("a", {"p": proj["deconvnet"], "d": picture}, None)] * 2,
                           as_image=["d"])
    assert torch.allclose(torch.as_tensor(fig.axes[2].images[0].get_array()), torch.tensor(0.25)), "shown as it is"
    plt.close(fig)
    with pytest.raises(ValueError, match="2 images for 1 rows"):
        show_projections(torch.rand(2, 3, 16, 16), [("a", proj, None)])
