"""Pooling and unpooling of the toy example, the outside-the-box share, and the figures."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from zfcourse.explore import pooling_array
from zfcourse.viz_deconv import draw_box, outside_share, pool_unpool, show_pooling, show_projections


def test_a_pixel_shared_by_four_windows_adds_their_signals_and_maxunpool_keeps_one():
    x = pooling_array(2, 2)
    signal = torch.arange(1.0, 10.0)
    p = pool_unpool(x, signal)
    assert p.pooled.shape == (3, 3)
    assert p.windows[2, 2] == 4 and p.windows.sum() == 9
    assert p.added[2, 2] == 1 + 2 + 4 + 5, "windows (0,0), (0,1), (1,0), (1,1) all chose (2, 2)"
    assert p.overwritten[2, 2] in (1, 2, 4, 5)
    assert p.added.sum() == signal.sum() and p.overwritten.sum() < signal.sum()
    single = p.windows == 1
    assert torch.equal(p.added[single], p.overwritten[single])


def test_unpooling_by_adding_is_the_adjoint_of_pooling_at_fixed_switches():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(9, 9, generator=g)
    x[4, 4] = 2  # shared by four windows
    signal = torch.randn(4, 4, generator=g)
    p = pool_unpool(x, signal)
    y = torch.randn(9, 9, generator=g)
    pooled_y = y.flatten()[p.switches.flatten()]  # y read at x's switches
    assert torch.allclose((pooled_y * signal.flatten()).sum(), (y * p.added).sum(), atol=1e-5)
    assert not torch.allclose((pooled_y * signal.flatten()).sum(), (y * p.overwritten).sum(), atol=1e-3)


def test_pool_unpool_defaults_to_the_pooled_values_and_checks_its_input():
    p = pool_unpool(pooling_array(3, 3))
    assert torch.equal(p.signal, p.pooled)
    assert torch.equal(p.overwritten, F.max_unpool2d(p.pooled[None, None], p.switches[None, None], 3, 2,
                                                     output_size=(7, 7))[0, 0])
    with pytest.raises(ValueError, match="2-D"):
        pool_unpool(torch.zeros(1, 7, 7))


def test_pooling_array_has_distinct_values_and_one_bright_pixel():
    x = pooling_array(1, 5)
    assert x.flatten().unique().numel() == 49 and x.argmax() == 1 * 7 + 5
    with pytest.raises(ValueError, match="outside"):
        pooling_array(7, 0)


def test_outside_share():
    x = torch.zeros(2, 3, 10, 10)
    x[0, :, 2:5, 3:6] = 1
    x[1, :, 0, 0] = 1
    x[1, :, 3, 3] = 1
    share = outside_share(x, (2, 3, 5, 6))
    assert torch.allclose(share, torch.tensor([0.0, 0.5]))
    assert outside_share(torch.zeros(3, 4, 4), (0, 0, 2, 2)) == 0
    assert outside_share(torch.ones(3, 4, 4), (-5, -5, 20, 20)) == 0, "a box past the border covers the image"


def test_draw_box_outlines_the_pixels_of_the_box():
    fig, ax = plt.subplots()
    draw_box(ax, (2, 3, 5, 9))
    (rect,) = ax.patches
    assert (rect.get_x(), rect.get_y(), rect.get_width(), rect.get_height()) == (2.5, 1.5, 6, 3)
    plt.close(fig)


def test_figures_have_one_panel_per_projection():
    fig = show_pooling(pool_unpool(pooling_array(2, 2)), title="t")
    assert len(fig.axes) == 4
    plt.close(fig)
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
