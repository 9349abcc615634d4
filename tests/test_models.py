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


@pytest.mark.parametrize("images, message", [
    (torch.zeros(2, 1, 64, 64), "3 colour channels"),
    (torch.zeros(3, 64, 64), r"\[N, 3, H, W\]"),
    (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "floating point"),
    (torch.full((1, 3, 64, 64), float("nan")), "NaN or infinite"),
    ([[0.0]], r"\[N, 3, H, W\], got list"),
])
def test_bad_images_are_named(images, message):
    with pytest.raises(ValueError, match=message):
        models.activations(models.mini_alexnet(10), images, "conv1")


def test_no_layers_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match="at least one layer; valid: conv1, pool1"):
        models.activations(models.mini_alexnet(10), torch.zeros(1, 3, 64, 64), [])


@pytest.mark.parametrize("make, smallest", [(models.alexnet, 63), (models.zfnet, 47),
                                            (lambda: models.mini_alexnet(10), 1)])
def test_any_size_the_network_can_compute_is_taken_and_smaller_ones_name_the_smallest(make, smallest):
    model = make().eval()
    # the reference: whether PyTorch itself can run the model, size by size
    for size in range(max(1, smallest - 2), smallest + 3):
        x = torch.zeros(1, 3, size, size)
        try:
            with torch.no_grad():
                model(x)
            runs = True
        except RuntimeError:
            runs = False
        assert runs == (size >= smallest), size
        if runs:
            assert models.activations(model, x, "fc8")["fc8"].shape == (1, model(x).shape[1])
        else:
            with pytest.raises(ValueError, match=f"{size}x{size} images are too small.*"
                                                 f"smallest it takes is {smallest}x{smallest}"):
                models.activations(model, x, "fc8")


def test_a_shallow_layer_needs_less_than_the_whole_network():
    model = models.alexnet()
    assert models.activations(model, torch.zeros(1, 3, 11, 11), "conv1")["conv1"].shape == (1, 64, 2, 2)
    with pytest.raises(ValueError, match="too small for conv2"):
        models.activations(model, torch.zeros(1, 3, 11, 11), "conv2")
    with pytest.raises(ValueError, match="too small for this model"):
        models.check_images(model, torch.zeros(1, 3, 40, 90))


def test_recorded_layers_do_not_depend_on_the_mode_or_on_the_other_layers_asked_for():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.MaxPool2d(2),
                                torch.nn.ReLU(inplace=True), torch.nn.Dropout(0.5),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 2)).train()
    x = torch.randn(2, 3, 8, 8)
    alone = models.activations(model, x, "pool1")["pool1"]
    both = models.activations(model, x, ["pool1", "fc2"])
    assert (alone < 0).any()                            # before the ReLU: negative values kept
    assert torch.equal(both["pool1"], alone)
    again = models.activations(model, x, "fc2")["fc2"]
    assert torch.equal(again, both["fc2"])              # dropout off: the same twice
    assert model.training                               # and the mode put back


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


def test_a_model_the_course_cannot_name_says_how_to_write_it():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(KeyError, match="no layer the course can name.*one Block block.*nn.Sequential"):
        models.layer_index(Block(), "conv1")
    with pytest.raises(TypeError, match="a layer name or a list of them"):
        models.activations(models.mini_alexnet(10), torch.zeros(1, 3, 64, 64), 3)
    with pytest.raises(ValueError, match="size must be at least 1"):
        models.summary(models.mini_alexnet(10), 0)
