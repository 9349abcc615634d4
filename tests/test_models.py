import pytest
import torch

from zfcourse import models

PAPER_NAMES = ["conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8"]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_zfnet_matches_fig3():
    model = models.zfnet()
    assert n_params(model) == 62_357_608
    assert models.layer_names(model) == PAPER_NAMES
    with torch.no_grad():
        out = models.activations(model.eval(), torch.zeros(1, 3, 224, 224), ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc8"])
    sizes = [out[n].shape[-1] for n in ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"]]
    assert sizes == [110, 55, 26, 13, 13, 13, 13, 6]
    assert out["fc8"].shape == (1, 1000)


def test_zfnet_num_classes_changes_only_the_last_layer():
    assert n_params(models.zfnet()) - n_params(models.zfnet(num_classes=10)) == 990 * 4097


def test_alexnet_is_torchvisions_with_paper_names():
    model = models.alexnet()
    assert n_params(model) == 61_100_840
    assert models.layer_names(model) == [n for n in PAPER_NAMES if not n.startswith("norm")]
    out = models.activations(model.eval(), torch.zeros(2, 3, 224, 224), ["conv1", "pool2", "conv5", "fc7", "fc8"])
    assert out["conv1"].shape == (2, 64, 55, 55)
    assert out["pool2"].shape == (2, 192, 13, 13)
    assert out["conv5"].shape == (2, 256, 13, 13)
    assert out["fc7"].shape == (2, 4096)
    assert out["fc8"].shape == (2, 1000)


@pytest.mark.parametrize("factory, conv1", [(models.mini_alexnet, (11, 4, 16)), (models.mini_zfnet, (7, 2, 32))])
def test_minis_keep_the_papers_contrast(factory, conv1):
    model = factory(10).eval()
    first = models.sequence(model)[0]
    kernel, stride, size = conv1
    assert first.kernel_size == (kernel, kernel) and first.stride == (stride, stride)
    out = models.activations(model, torch.zeros(3, 3, 64, 64), models.layer_names(model))
    assert out["conv1"].shape[-1] == size
    # from pool2 on, both minis have the same map sizes, as AlexNet and ZFNet do (13 at conv5)
    assert [out[n].shape[-1] for n in ["pool2", "conv3", "conv5", "pool5"]] == [4, 4, 4, 2]
    assert out["fc8"].shape == (3, 10)


def test_get_layer_returns_the_module_whose_output_is_the_layer():
    model = models.mini_zfnet(10).eval()
    x = torch.randn(2, 3, 64, 64)
    seen = {}
    handle = models.get_layer(model, "conv2").register_forward_hook(lambda m, i, o: seen.setdefault("o", o.clone()))
    model(x)
    handle.remove()
    assert isinstance(models.get_layer(model, "conv2"), torch.nn.ReLU)
    assert torch.equal(seen["o"], models.activations(model, x, "conv2")["conv2"])
    assert (seen["o"] >= 0).all()


def test_activations_equal_the_full_forward_pass():
    torch.manual_seed(0)
    model = models.mini_alexnet(10).eval()
    x = torch.randn(4, 3, 64, 64)
    assert torch.allclose(models.activations(model, x, "fc8")["fc8"], model(x))


def test_unknown_layer_lists_valid_names():
    with pytest.raises(KeyError, match="conv5.*pool5.*fc8"):
        models.get_layer(models.mini_alexnet(10), "conv6")


@pytest.mark.parametrize("shape, message", [
    ((2, 1, 64, 64), "3 colour channels"),
    ((2, 3, 32, 32), "64x64"),
    ((3, 64, 64), r"\[N, 3, 64, 64\]"),
])
def test_bad_images_are_named(shape, message):
    with pytest.raises(ValueError, match=message):
        models.activations(models.mini_alexnet(10), torch.zeros(shape), "conv1")


def test_pretrained_alexnet_needs_1000_classes():
    with pytest.raises(ValueError, match="1000 classes"):
        models.alexnet(pretrained=True, num_classes=10)


def test_strongest_unit_and_channels():
    maps = torch.zeros(4, 3, 5)
    maps[2, 1, 3] = 5.0   # the strongest unit
    maps[0, 2, 0] = 3.0
    maps[3, 0, 4] = 3.0   # a tie with channel 0: the first channel goes first
    maps[1, 2, 2] = -1.0  # never positive: last
    assert models.strongest_unit(maps) == (2, (1, 3))
    assert models.strongest_channels(maps).tolist() == [2, 0, 3, 1]
    assert models.strongest_channels(maps, 2).tolist() == [2, 0]
    maps[0, 0, 1] = 5.0   # a tie for the strongest: the first channel, then reading order
    maps[0, 1, 0] = 5.0
    assert models.strongest_unit(maps) == (0, (0, 1))
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        models.strongest_unit(maps[None])
