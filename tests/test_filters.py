import pytest
import torch
from torch import nn

from zfcourse import models
from zfcourse.filters import dead_filters, filter_rms, filter_table, frequency_content


def _checkerboard(k, channels=3):
    i = torch.arange(k)
    return ((-1.0) ** (i[:, None] + i[None, :])).expand(1, channels, k, k).clone()


def test_constant_filter_is_low_band_and_checkerboard_is_high_band():
    # on the kernel's own grid the spectra are single bins: exactly one band
    assert torch.allclose(frequency_content(torch.ones(1, 3, 7, 7), size=7).shares[0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    assert torch.allclose(frequency_content(_checkerboard(8), size=8).shares[0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    # zero-padded to a common size a finite box leaks a little past its main lobe
    for k in (7, 11):
        const = frequency_content(torch.ones(1, 3, k, k))
        board = frequency_content(_checkerboard(k))
        assert const.shares[0, 0] > 0.8 and board.shares[0, 2] > 0.99
        assert const.spectrum[0].argmax() == 0 and board.spectrum[0].argmax() == len(board.radii) - 1
        assert torch.allclose(const.shares.sum(1), torch.ones(1))


def test_a_sinusoid_at_half_nyquist_is_mid_band_and_spectra_are_normalised():
    k = 11
    x = torch.arange(k, dtype=torch.float32)
    wave = torch.cos(torch.pi * 0.5 * x)[None, :].expand(k, k)  # half a cycle every two pixels along x
    w = torch.stack([wave.expand(3, k, k), torch.ones(3, k, k)])
    fc = frequency_content(w, size=32)
    assert fc.shares[0].argmax() == 1 and fc.shares[0, 1] > 0.8
    peak = fc.radii[fc.spectrum[0].argmax()]
    assert abs(peak - 0.5) < 0.1
    assert torch.allclose(fc.spectrum.sum(1), torch.ones(2))
    assert torch.allclose(fc.mean_spectrum, fc.spectrum.mean(0))
    assert torch.allclose(fc.mean_shares, fc.shares.mean(0))


def test_frequency_content_is_scale_invariant_and_zero_filter_has_no_shares():
    w = torch.randn(4, 3, 7, 7)
    w[3] = 0
    a, b = frequency_content(w), frequency_content(w * 37)
    assert torch.allclose(a.shares, b.shares, atol=1e-6)
    assert a.shares[3].tolist() == [0.0, 0.0, 0.0] and torch.allclose(a.shares[:3].sum(1), torch.ones(3))
    assert torch.allclose(a.mean_shares, a.shares[:3].mean(0))  # the zero filter does not dilute the mean


def test_frequency_content_accepts_models_and_convs_and_rejects_bad_input():
    torch.manual_seed(0)
    model = models.mini_alexnet(10)
    fc = frequency_content(model, "conv1")
    assert fc.shares.shape == (48, 3)
    assert torch.equal(fc.shares, frequency_content(models.conv_of(model, "conv1")).shares)
    with pytest.raises(ValueError, match="kernel size 11"):
        frequency_content(model, size=8)
    with pytest.raises(ValueError, match="bands"):
        frequency_content(model, bands=(0.6, 0.3))
    with pytest.raises(ValueError, match=r"\[C, C_in, k, k\]"):
        frequency_content(torch.ones(7, 7))


def _model_with_known_filters():
    torch.manual_seed(0)
    model = models.mini_zfnet(10)
    conv = models.conv_of(model, "conv1")
    with torch.no_grad():
        conv.weight.copy_(torch.rand_like(conv.weight) * 0.1)  # positive filters fire on positive images
        conv.bias.zero_()
        conv.weight[0] = -conv.weight[0]  # responds only to negative input
        conv.weight[1] = 0
        conv.bias[1] = 1.0  # fires everywhere, but only through its bias
        conv.weight[2] *= 1e-4  # vanished
        conv.bias[3] = -1e3  # never reaches zero
    return model


def test_dead_filters_by_activation_and_by_norm():
    model = _model_with_known_filters()
    images = torch.rand(20, 3, 64, 64) + 0.01  # strictly positive inputs
    d = dead_filters(model, images, batch_size=8)
    assert d.never_fires[:4].tolist() == [True, False, False, True]
    assert d.vanished[:4].tolist() == [False, True, True, False]
    assert d.dead[:4].all() and not d.dead[4:].any()
    assert d.fraction == pytest.approx(4 / 48)
    assert d.max_response[1] == pytest.approx(1.0) and (d.max_response[4:] > 0).all()
    assert "4 of 48 dead" in repr(d)
    # on images with negative pixels the negated filter fires: the sample decides
    assert not dead_filters(model, -images).never_fires[0]


def test_dead_filters_rejects_bad_layers_and_thresholds():
    model = models.mini_zfnet(10)
    with pytest.raises(ValueError, match="not a convolutional layer"):
        dead_filters(model, torch.rand(2, 3, 64, 64), layer="pool1")
    with pytest.raises(ValueError, match="rel_norm"):
        dead_filters(model, torch.rand(2, 3, 64, 64), rel_norm=-1)


def test_filter_table_rows():
    model = _model_with_known_filters()
    rows = filter_table({"zf": model, "alex": models.mini_alexnet(10)}, torch.rand(4, 3, 64, 64) + 0.01)
    assert [(r["model"], r["kernel"], r["stride"], r["filters"]) for r in rows] == [("zf", 7, 2, 48), ("alex", 11, 4, 48)]
    assert rows[0]["dead"] == pytest.approx(4 / 48)
    assert all(abs(r["low"] + r["mid"] + r["high"] - 1) < 1e-5 for r in rows)


def test_filter_rms_is_the_root_mean_square_of_each_filter():
    bank = torch.stack([torch.full((3, 2, 2), v) for v in (0.5, -2.0)])
    bank[1, 0, 0, 0] = 0.0                       # 11 taps of 4, 1 of 0
    assert torch.allclose(filter_rms(bank), torch.tensor([0.5, (11 / 12 * 4) ** 0.5]))
    conv = nn.Conv2d(3, 2, 2)
    assert torch.equal(filter_rms(conv), conv.weight.detach().pow(2).mean((1, 2, 3)).sqrt())
