"""Signed scales, montages and boxes: what every figure draws with."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from zfcourse.figures.common import draw_box, montage, signed_scale  # noqa: E402

NAN = float("nan")


def test_signed_scale_puts_zero_at_grey_and_clips_the_extremes():
    x = torch.zeros(3, 1, 10, 20)
    x[0, 0, 0, :] = torch.linspace(-2, 2, 20)                # 20 of 200 pixels non-zero
    x[1, 0, 5, 5] = NAN
    x[1, 0, 0, 0] = -1e6                                      # one extreme pixel: clipped, not the scale
    x[1, 0, 0, 1:] = 3.0
    out = signed_scale(x, saturate=0.01)
    assert torch.all(out[2] == 0.5)                           # all zero: grey, no division by zero
    assert out[0, 0, 1:].eq(0.5).all() and out[0, 0, 0].min() == 0 and out[0, 0, 0].max() == 1
    assert torch.allclose(out[0, 0, 0] + out[0, 0, 0].flip(0), torch.ones(20))      # symmetric about grey
    assert out[1, 0, 0, 0] == 0 and out[1, 0, 0, 1] == 1 and out[1, 0, 5, 5].isnan()
    assert out[1, 0, 3, 3] == 0.5


def test_montage_lays_tiles_out_in_rows_with_gaps_and_white_for_nan():
    tiles = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 3, 4, 6) / 10
    tiles = tiles.clone()
    tiles[4, :, 0, 0] = NAN
    out = montage(tiles, ncols=2, gap=1, line=0.25)
    assert out.shape == (3, 3 * 5 + 1, 2 * 7 + 1)
    for i in range(5):
        r, q = divmod(i, 2)
        block = out[:, 1 + 5 * r: 5 + 5 * r, 1 + 7 * q: 7 + 7 * q]
        expected = torch.full((3, 4, 6), i / 10)
        if i == 4:
            expected[:, 0, 0] = 1.0
        assert torch.allclose(block, expected)
    assert (out[:, 0] == 0.25).all() and (out[:, :, 7] == 0.25).all()
    assert (out[:, 11:15, 8:14] == 0.25).all()                # the empty sixth place


def test_draw_box_outlines_the_pixels_of_the_box():
    fig, ax = plt.subplots()
    draw_box(ax, (2, 3, 5, 9))
    (rect,) = ax.patches
    assert (rect.get_x(), rect.get_y(), rect.get_width(), rect.get_height()) == (2.5, 1.5, 6, 3)
    plt.close(fig)




def test_categorical_colours_are_distinct_and_colour_blind_safe_up_to_eight():
    from zfcourse.figures.common import CATEGORICAL, categorical
    assert categorical(5) == list(CATEGORICAL[:5])
    many = categorical(12)
    assert len(set(many)) == 12 and many[:8] == list(CATEGORICAL)
