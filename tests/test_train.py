import pytest
import torch
from torch import nn

from zfcourse import models, train
from zfcourse.synthetic import SyntheticImages


def test_renormalisation_caps_rms_and_leaves_small_filters_alone():
    torch.manual_seed(0)
    model = models.mini_zfnet(10)
    conv = models.conv_of(model, "conv1")
    with torch.no_grad():
        conv.weight[:10] *= 100  # these exceed the radius
        conv.weight[10:] *= 0.01 / conv.weight[10:].pow(2).mean((1, 2, 3), keepdim=True).sqrt()  # these do not
    before = conv.weight.detach().clone()
    n = train.renormalize_filters(model, radius=0.1)
    rms = conv.weight.pow(2).mean((1, 2, 3)).sqrt()
    assert (rms <= 0.1 + 1e-6).all()
    assert torch.allclose(rms[:10], torch.full((10,), 0.1))
    assert torch.equal(conv.weight[10:], before[10:])
    # direction is kept: rescaling, not clipping
    assert torch.allclose(torch.nn.functional.normalize(conv.weight[:10].flatten(1)), torch.nn.functional.normalize(before[:10].flatten(1)), atol=1e-6)
    assert n >= 10


def test_folded_batchnorm_computes_what_the_normalised_network_did():
    torch.manual_seed(0)
    model = models.mini_alexnet(10)
    net = train.with_batchnorm(model)
    assert sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in net) == 7  # 5 conv + fc6 + fc7
    net.train()
    for _ in range(3):  # give the running statistics and affine maps non-trivial values
        net(torch.randn(16, 3, 64, 64) * 2 + 0.5)
    with torch.no_grad():
        for m in net:
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 2), m.bias.uniform_(-1, 1)
    x = torch.randn(4, 3, 64, 64)
    expected = net.eval()(x)
    train.fold_batchnorm(net)
    assert torch.allclose(model.eval()(x), expected, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())


def test_training_is_deterministic_and_learns():
    data = SyntheticImages("train", 256, seed=1)

    def run():
        torch.manual_seed(0)
        model = models.mini_alexnet(10)
        hist = train.train(model, data, epochs=2, lr=0.05, batchnorm=True, seed=3, device="cpu", progress=False)
        return model, hist

    (a, ha), (b, hb) = run(), run()
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(p, q)
    assert ha["loss"] == hb["loss"] and ha["loss"][1] < ha["loss"][0]


def test_renormalisation_during_training():
    data = SyntheticImages("train", 128, seed=1)
    torch.manual_seed(0)
    model = models.mini_zfnet(10)
    train.train(model, data, epochs=1, lr=0.05, renorm_radius=0.05, device="cpu", progress=False)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.weight.pow(2).mean((1, 2, 3)).sqrt().max() <= 0.05 + 1e-6


def test_renormalisation_and_batchnorm_exclude_each_other():
    with pytest.raises(ValueError, match="renormalisation"):
        train.train(models.mini_zfnet(10), SyntheticImages("train", 8), renorm_radius=0.1, batchnorm=True, progress=False)
