"""Receptive fields: hand-computed values, an empirical gradient check, boxes and crops."""
import pytest
import torch
from torch import nn

from zfcourse.models import activations, alexnet, layer_index, layer_names, mini_alexnet, mini_zfnet, sequence, zfnet
from zfcourse.receptive import crop_patches, keep_box, patch_box, receptive_field

# Hand-computed with S += (k-1)*J, P += p*J, J *= s, layer by layer:
#   AlexNet: conv1 11/4 p2, pools 3/2, conv2 5/1 p2, conv3-5 3/1 p1.
#   ZFNet:   conv1 7/2 p1, pools 3/2 (ceil_mode, p0), conv2 5/2 p0, conv3-5 3/1 p1.
#   mini AlexNet: conv1 11/4 p5, pools 3/2 p1, conv2 5/1 p2, conv3-5 3/1 p1.
#   mini ZFNet:   conv1 7/2 p3, pools 3/2 p1, conv2 5/2 p2, conv3-5 3/1 p1.
# Normalisation layers, where a model has them, repeat the pooling layer before them.
EXPECTED = {
    "alexnet": {"conv1": (11, 4, 2), "pool1": (19, 8, 2), "conv2": (51, 8, 18), "pool2": (67, 16, 18),
                "conv3": (99, 16, 34), "conv4": (131, 16, 50), "conv5": (163, 16, 66), "pool5": (195, 32, 66)},
    "zfnet": {"conv1": (7, 2, 1), "pool1": (11, 4, 1), "norm1": (11, 4, 1), "conv2": (27, 8, 1),
              "pool2": (43, 16, 1), "norm2": (43, 16, 1), "conv3": (75, 16, 17), "conv4": (107, 16, 33),
              "conv5": (139, 16, 49), "pool5": (171, 32, 49)},
    "mini_alexnet": {"conv1": (11, 4, 5), "pool1": (19, 8, 9), "norm1": (19, 8, 9), "conv2": (51, 8, 25),
                     "pool2": (67, 16, 33), "norm2": (67, 16, 33), "conv3": (99, 16, 49),
                     "conv4": (131, 16, 65), "conv5": (163, 16, 81), "pool5": (195, 32, 97)},
    "mini_zfnet": {"conv1": (7, 2, 3), "pool1": (11, 4, 5), "norm1": (11, 4, 5), "conv2": (27, 8, 13),
                   "pool2": (43, 16, 21), "norm2": (43, 16, 21), "conv3": (75, 16, 37),
                   "conv4": (107, 16, 53), "conv5": (139, 16, 69), "pool5": (171, 32, 85)},
    # dilation 2 with padding='same' (pad 2), then a 2x2 pool, then a 3x3 conv padded by 1
    "dilated": {"conv1": (5, 1, 2), "pool1": (6, 2, 2), "conv2": (10, 2, 4)},
}


def dilated():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding="same", dilation=2), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, padding=1))


MODELS = {"alexnet": alexnet, "zfnet": zfnet, "mini_alexnet": lambda: mini_alexnet(10),
          "mini_zfnet": lambda: mini_zfnet(10), "dilated": dilated}
_built = {}


def model(name):
    if name not in _built:
        torch.manual_seed(0)
        _built[name] = MODELS[name]().eval()
    return _built[name]


@pytest.mark.parametrize("name", EXPECTED)
def test_receptive_field_matches_hand_values(name):
    m = model(name)
    spatial = [n for n in layer_names(m) if not n.startswith("fc")]
    assert {layer: receptive_field(m, layer) for layer in spatial} == {n: EXPECTED[name][n] for n in spatial}
    # normalisation layers are optional (the minis may leave them out), the others are not
    assert {n for n in EXPECTED[name] if not n.startswith("norm")} <= set(spatial)


def test_fully_connected_layers_raise():
    with pytest.raises(ValueError, match="fully connected"):
        receptive_field(model("mini_alexnet"), "fc6")


def test_unknown_module_raises():
    with pytest.raises(TypeError, match="Upsample"):
        receptive_field(nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 3, 3), nn.ReLU()), "conv1")


def _positive_average_pooled(m: nn.Module, layer: str) -> nn.Sequential:
    """The layers up to ``layer`` with max pooling replaced by average pooling of the
    same geometry and all weights positive: every pixel of the receptive field then
    reaches the unit, so its gradient marks the whole box (max pooling routes the
    gradient through one switch per window and would leave parts of the box dark)."""
    mods = []
    for mod in sequence(m)[: layer_index(m, layer) + 1]:
        if isinstance(mod, nn.MaxPool2d):
            mod = nn.AvgPool2d(mod.kernel_size, mod.stride, mod.padding, ceil_mode=mod.ceil_mode)
        elif isinstance(mod, nn.Conv2d):
            w = mod.weight.detach().abs()
            mod = nn.Conv2d(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding,
                            mod.dilation, bias=False)
            # normalised so that activations neither explode nor vanish with depth
            mod.weight.data = w / w.sum(dim=(1, 2, 3), keepdim=True)
        mods.append(mod)
    return nn.Sequential(*mods)


def _bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    return rows.min().item(), cols.min().item(), rows.max().item() + 1, cols.max().item() + 1


@pytest.mark.parametrize("name", EXPECTED)
def test_receptive_field_is_where_the_gradient_reaches(name):
    m, size = model(name), 224
    torch.manual_seed(1)
    x = (torch.rand(1, 3, size, size) + 0.5).requires_grad_()
    for layer in [n for n in layer_names(m) if n[:4] in ("conv", "pool")]:   # norm: as the pool before it
        y = _positive_average_pooled(m, layer)(x)
        H, W = y.shape[-2:]
        for h, w in [(0, 0), (H // 2, W // 3), (H - 1, W - 1)]:
            (grad,) = torch.autograd.grad(y[0, 0, h, w], x, retain_graph=True)
            support = grad[0].abs().sum(0) > 0
            assert _bbox(support) == patch_box(m, layer, (h, w), image_size=size), (layer, h, w)


@pytest.mark.parametrize("name", ["alexnet", "mini_zfnet"])
def test_real_network_gradient_stays_inside_the_box(name):
    # Random weights, max pooling and ReLUs: the gradient may reach only part of the box, never beyond.
    m, size = model(name), 224
    torch.manual_seed(2)
    for layer in ("pool1", "conv3", "pool5"):
        net = nn.Sequential(*sequence(m)[: layer_index(m, layer) + 1])
        x = (torch.rand(1, 3, size, size) + 0.5).requires_grad_()
        y = net(x)[0]
        c, h, w = [i.item() for i in torch.unravel_index(y.argmax(), y.shape)]   # a live unit
        (grad,) = torch.autograd.grad(y[c, h, w], x)
        support = grad[0].abs().sum(0) > 0
        top, left, bottom, right = patch_box(m, layer, (h, w), image_size=size)
        assert support.any()
        assert not support[:top].any() and not support[bottom:].any()
        assert not support[:, :left].any() and not support[:, right:].any()


def test_patch_box_interior_and_borders():
    m = model("alexnet")                      # conv5: size 163, stride 16, padding 66
    assert patch_box(m, "conv5", (6, 6)) == (30, 30, 193, 193)
    assert patch_box(m, "conv5", (6, 6), image_size=224) == (30, 30, 193, 193)
    assert patch_box(m, "conv5", (0, 12)) == (-66, 126, 97, 289)
    assert patch_box(m, "conv5", (0, 12), image_size=224) == (0, 126, 97, 224)
    assert patch_box(m, "conv5", (0, 10), image_size=(100, 200)) == (0, 94, 97, 200)
    assert patch_box(m, "conv5", torch.tensor([6, 6])) == (30, 30, 193, 193)
    with pytest.raises(ValueError, match="non-negative"):
        patch_box(m, "conv5", (-1, 0))


def test_patch_box_refuses_positions_off_the_map_and_floats():
    m = model("alexnet")
    with pytest.raises(ValueError, match=r"\(100, 100\) is outside conv5's 13x13 map.*h in 0..12"):
        patch_box(m, "conv5", (100, 100), image_size=224)
    with pytest.raises(ValueError, match=r"\(0, 12\) is outside conv5's 5x11 map"):
        patch_box(m, "conv5", (0, 12), image_size=(100, 200))
    with pytest.raises(TypeError, match="pair of ints"):
        patch_box(m, "conv5", (6.5, 6))
    with pytest.raises(ValueError, match="pair of ints"):
        patch_box(m, "conv5", 6)
    with pytest.raises(TypeError, match="integers"):
        crop_patches(m, torch.zeros(1, 3, 224, 224), "conv5", torch.tensor([[6.5, 6.0]]))
    with pytest.raises(ValueError, match="outside conv5's 13x13 map"):
        crop_patches(m, torch.zeros(1, 3, 224, 224), "conv5", [[13, 0]])


def test_crop_patches_pad_outside_the_image_and_copy_inside():
    m = model("mini_alexnet")                 # conv2: size 51, stride 8, padding 25; 64 px images
    torch.manual_seed(0)
    images = torch.rand(3, 3, 64, 64)
    positions = torch.tensor([[0, 0], [4, 3], [7, 7]])
    patches = crop_patches(m, images, "conv2", positions, fill=-1.0)
    assert patches.shape == (3, 3, 51, 51)
    for img, patch, pos in zip(images, patches, positions):
        top, left, bottom, right = patch_box(m, "conv2", pos)
        ctop, cleft, cbottom, cright = patch_box(m, "conv2", pos, image_size=64)
        inside = patch[:, ctop - top:cbottom - top, cleft - left:cright - left]
        assert torch.equal(inside, img[:, ctop:cbottom, cleft:cright])
        outside = torch.ones(51, 51, dtype=torch.bool)
        outside[ctop - top:cbottom - top, cleft - left:cright - left] = False
        assert (patch[:, outside] == -1).all()
    assert (patches[0, :, :25, :] == -1).all() and (patches[0, :, 25:, 25:] != -1).all()
    # position (4, 3) of conv2 is interior: its box is (7, -1, 58, 50); one column is padding
    assert (patches[1, :, :, 0] == -1).all() and torch.equal(patches[1, :, :, 1:], images[1, :, 7:58, 0:50])


def test_keep_box_leaves_the_unit_unchanged_and_fills_the_rest():
    net = model("mini_alexnet")
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 64)
    box = patch_box(net, "pool1", (2, 5))  # (7, 31, 26, 50)
    kept = keep_box(x, box, fill=0.5)
    top, left, bottom, right = box
    assert torch.equal(kept[..., top:bottom, left:right], x[..., top:bottom, left:right])
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[top:bottom, left:right] = False
    assert (kept[..., outside] == 0.5).all() and outside.sum() == 64 * 64 - 19 * 19
    unit = [activations(net, t, "pool1")["pool1"][0, :, 2, 5] for t in (x, keep_box(x, box))]
    assert torch.allclose(unit[0], unit[1], rtol=1e-5, atol=1e-6 * unit[0].abs().max())
    elsewhere = [activations(net, t, "pool1")["pool1"][0, :, 6, 1] for t in (x, keep_box(x, box))]
    assert not torch.allclose(elsewhere[0], elsewhere[1])
    corner = keep_box(x, (-5, -5, 3, 4))  # clipped at the top left
    assert torch.equal(corner[..., :3, :4], x[..., :3, :4]) and corner.abs().sum() == x[..., :3, :4].abs().sum()
