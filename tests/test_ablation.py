import pytest
import torch
from torch import nn

import zfcourse
from zfcourse import ablation, minis, models, train


def _count(model, kind):
    return sum(isinstance(m, kind) for m in models.sequence(model))


@pytest.mark.parametrize("variant, convs, linears", [
    (ablation.BASELINE, 5, 3),
    ("removed layers 6, 7", 5, 1),
    ("removed layers 3, 4", 3, 3),
    ("removed layers 3, 4, 6, 7", 3, 1),
    ("layers 6, 7: twice the units", 5, 3),
])
def test_variants_remove_the_layers_they_name(variant, convs, linears):
    model = ablation.build(variant, 10)
    assert (_count(model, nn.Conv2d), _count(model, nn.Linear)) == (convs, linears)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 10)


def test_the_baseline_is_the_chapters_mini_and_widths_are_the_variants():
    torch.manual_seed(0)
    a = ablation.build(ablation.BASELINE, 10)
    torch.manual_seed(0)
    b = models.mini_zfnet(10)
    assert str(a) == str(b) and all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    wide = ablation.build("layers 3, 4, 5: 176, 336, 192 maps", 10)
    assert [m.out_channels for m in models.sequence(wide) if isinstance(m, nn.Conv2d)][2:] == [176, 336, 192]
    dense = ablation.build("layers 6, 7: half the units", 10)
    assert [m.out_features for m in models.sequence(dense) if isinstance(m, nn.Linear)] == [128, 128, 10]
    # the layers keep the paper's names by position
    assert models.layer_names(ablation.build("removed layers 3, 4, 6, 7", 10))[-3:] == ["conv3", "pool3", "fc4"]


def test_bad_variants_and_widths_are_named():
    with pytest.raises(ValueError, match="unknown variant 'vgg'; valid: 'ZF-style"):
        ablation.build("vgg", 10)
    with pytest.raises(ValueError, match="middle must hold at least 1"):
        models.mini_zfnet(10, middle=())
    with pytest.raises(TypeError, match="each width of hidden must be an int"):
        models.mini_zfnet(10, hidden=(256.0,))
    with pytest.raises(TypeError, match="hidden must be a tuple of layer widths"):
        models.mini_zfnet(10, hidden=256)


def test_errors_are_the_shares_of_images_missed(tiny_synthetic):
    world = zfcourse.world("synthetic")
    train_set, val_set = minis.training_data(world)
    torch.manual_seed(0)
    model = ablation.build("removed layers 6, 7", len(val_set.classes)).eval()
    got = ablation.errors(model, train_set, val_set, train_images=60)
    with torch.no_grad():
        logits = model(val_set.transform_batch(val_set.images))
        part = minis.subset(train_set, 60)
        train_logits = model(part.transform_batch(part.images))
    rank = (logits > logits.gather(1, val_set.labels[:, None])).sum(1)
    assert got["val top-1"] == pytest.approx(float((rank >= 1).float().mean()))
    assert got["val top-5"] == pytest.approx(float((rank >= 5).float().mean()))
    assert got["train top-1"] == pytest.approx(float((train_logits.argmax(1) != part.labels).float().mean()))


def test_a_variant_trains_with_the_minis_recipe_and_caches(tiny_synthetic, monkeypatch):
    world = zfcourse.world("synthetic")
    model, hist = ablation.trained(world, "removed layers 3, 4", progress=False)
    assert _count(model, nn.Conv2d) == 3 and len(hist.loss) == zfcourse.worlds.RECIPE["epochs"]
    base, _ = ablation.trained(world, ablation.BASELINE, progress=False)
    mini, _ = minis.trained(world, "zfnet", progress=False)
    assert all(torch.equal(p, q) for p, q in zip(base.parameters(), mini.parameters()))
    other, _ = ablation.trained(world, ablation.BASELINE, seed=1, progress=False)
    assert not torch.equal(next(other.parameters()), next(mini.parameters()))
    monkeypatch.setattr(train, "_batches", lambda *a, **k: pytest.fail("trained again"))
    ablation.trained(world, "removed layers 3, 4", progress=False)
    with pytest.raises(TypeError, match="seed must be an int"):
        ablation.trained(world, ablation.BASELINE, seed=1.5)


def test_in_the_imagenet_world_a_variant_trains_on_small_imagenette(imagenet_standin, monkeypatch):
    monkeypatch.setitem(zfcourse.worlds.RECIPE, "epochs", 1)
    monkeypatch.setitem(zfcourse.worlds.RECIPE, "batch_size", 8)
    world = zfcourse.world("imagenet")
    train_set, val_set = minis.training_data(world)
    model, hist = ablation.trained(world, "removed layers 3, 4, 6, 7", progress=False)
    assert _count(model, nn.Linear) == 1 and len(hist.val_accuracy) == 1
    got = ablation.errors(model, train_set, val_set, train_images=20)
    assert set(got) == {"train top-1", "val top-1", "val top-5"} and all(0 <= v <= 1 for v in got.values())
