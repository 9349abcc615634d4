import pytest
import torch
from torch import nn

import zfcourse
from zfcourse import minis, models, train, worlds
from zfcourse.data.imagenette import TensorImages


def test_he_above_first_keeps_layer_one_and_rescales_the_rest():
    torch.manual_seed(0)
    model = models.mini_zfnet(10)
    first = models.conv_of(model, "conv1").weight.clone()
    minis.he_above_first(model)
    assert torch.equal(models.conv_of(model, "conv1").weight, first)
    for m in [m for m in models.sequence(model) if isinstance(m, (nn.Conv2d, nn.Linear))][1:]:
        fan_in = m.weight[0].numel()
        assert m.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)
        assert not m.bias.any()


def test_trained_in_synthetic_world_is_the_world_model_with_snapshots(tiny_synthetic):
    world = zfcourse.world("synthetic")
    model, hist = minis.trained(world, "alexnet", progress=False)
    for a, b in zip(model.state_dict().values(), world.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    assert sorted(hist.snapshots) == [1]  # the tiny world trains for one epoch


def test_trained_plain_renormalises_and_caches(tiny_synthetic, monkeypatch):
    monkeypatch.setitem(minis.PLAIN, "epochs", 1)
    monkeypatch.setattr(minis, "PLAIN_IMAGES", 100)
    world = zfcourse.world("synthetic")
    model, hist = minis.trained_plain(world, "zfnet", renorm_radius=0.01, progress=False)
    assert hist.rescaled[0] > 0 and len(hist.val_accuracy) == 1
    rms = {name: models.conv_of(model, name).weight.detach().pow(2).mean((1, 2, 3)).sqrt() for name in ("conv1", "conv2")}
    assert rms["conv1"].max() <= 0.01 + 1e-6 and rms["conv2"].min() > 0.01  # the cap is on layer 1 only
    monkeypatch.setattr(train, "_batches", lambda *a, **k: pytest.fail("trained again"))
    again, _ = minis.trained_plain(world, "zfnet", renorm_radius=0.01, progress=False)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_subset_is_even_and_consistent(tiny_synthetic):
    data = worlds.synthetic_data("train")
    part = minis.subset(data, 50)
    assert len(part) == 50 and len(part.masks) == 50 and len(data) == 200
    i = int((data.images == part.images[7]).flatten(1).all(1).nonzero()[0])
    assert data.labels[i] == part.labels[7]


def test_imagenet_world_trains_on_small_imagenette(imagenet_standin, monkeypatch):
    monkeypatch.setitem(worlds.RECIPE, "epochs", 1)
    monkeypatch.setitem(worlds.RECIPE, "batch_size", 8)
    world = zfcourse.world("imagenet")
    train_set, val_set = minis.training_data(world)
    assert isinstance(train_set, TensorImages) and train_set.images.shape[1:] == (3, 64, 64)
    model, hist = minis.trained(world, "zfnet", progress=False)
    assert model(val_set[0][0][None].to(world.device)).shape == (1, 10) and sorted(hist.snapshots) == [1]


def test_unknown_architecture_lists_valid_ones(tiny_synthetic):
    with pytest.raises(ValueError, match="alexnet, zfnet"):
        minis.trained(zfcourse.world("synthetic"), "vgg")


def test_as_world_swaps_in_the_mini_and_its_images(imagenet_standin):
    world = zfcourse.world("imagenet")
    mini = models.mini_alexnet(10)
    w = minis.as_world(world, mini)
    x, _ = w.val[0]
    assert w.model is mini and w.image_size == 64 and x.shape == (3, 64, 64)
    assert torch.allclose(w.normalize(w.denormalize(x)), x, atol=1e-5)
    assert world.model is not mini and world.image_size == 224


def test_trained_paper_renormalises_every_conv_layer(tiny_synthetic, monkeypatch):
    monkeypatch.setitem(minis.PAPER_RECIPE, "epochs", 1)
    monkeypatch.setitem(minis.PAPER_RECIPE, "renorm_radius", 0.02)
    world = zfcourse.world("synthetic")
    model, hist = minis.trained_paper(world, "alexnet", progress=False)
    convs = [m for m in models.sequence(model) if isinstance(m, nn.Conv2d)]
    assert hist.rescaled[0] > 0 and len(convs) == 5
    # He et al.'s initial RMS above layer 1 is over 0.02, so every layer is capped
    assert all(m.weight.detach().pow(2).mean((1, 2, 3)).sqrt().max() <= 0.02 + 1e-6 for m in convs)
