"""Aliasing as a number: the share of a strided layer's filter power its stride folds back."""
import pytest
import torch
from torch import nn

from zfcourse import models
from zfcourse.aliasing import aliased_share


def net(kernel, stride, weight=None):
    model = nn.Sequential(nn.Conv2d(3, 64, kernel, stride=stride), nn.ReLU())
    if weight is not None:
        with torch.no_grad():
            model[0].weight.copy_(weight)
    return model


def test_white_noise_filters_fold_back_one_minus_one_over_stride_squared():
    torch.manual_seed(0)
    for stride in (2, 4):
        white = torch.randn(64, 3, 16, 16)
        result = aliased_share(net(16, stride, white), "conv1", size=64)
        assert result.mean() == pytest.approx(1 - 1 / stride ** 2, abs=0.02)
        assert result.white == 1 - 1 / stride ** 2


def test_a_smooth_filter_folds_back_little_and_a_checkerboard_nearly_all():
    r = torch.arange(11.0) - 5
    blob = torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / 8).expand(64, 3, 11, 11)
    checks = ((r[:, None] + r[None]) % 2 * 2 - 1).expand(64, 3, 11, 11)
    assert aliased_share(net(11, 4, blob), "conv1").mean() < 0.1
    assert aliased_share(net(11, 4, checks), "conv1").mean() > 0.9
    zero = aliased_share(net(11, 4, torch.zeros(64, 3, 11, 11)), "conv1")
    assert torch.equal(zero.shares, torch.zeros(64)) and zero.mean() == 0.0


def test_the_stride_comes_from_the_layer():
    assert aliased_share(models.mini_alexnet(10)).stride == 4
    assert aliased_share(models.mini_zfnet(10)).stride == 2
    with pytest.raises(ValueError, match="at least the kernel size 11"):
        aliased_share(models.mini_alexnet(10), size=8)
