"""The deconvnet's reverse steps one by one: each is the adjoint (vector-Jacobian product)
of its forward module, checked against autograd or a constructed case."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zfcourse import models, reverse
from zfcourse.reverse import pool_unpool, pooling_array


def _vjp(f, x, g):
    x = x.detach().requires_grad_()
    return torch.autograd.grad(f(x), x, g)[0]


def _close(a, b, rtol=1e-5):
    assert a.shape == b.shape
    assert (a - b).abs().max() <= rtol * b.abs().max()


# Unpooling ---------------------------------------------------------------------------

def test_unpool_adds_values_that_share_a_switch():
    # A 3x5 map pooled with 3x3 windows at stride 2: the windows overlap in column 2,
    # and the 9 there is the maximum of both, so both windows' switches point at it.
    x = torch.zeros(1, 1, 3, 5)
    x[0, 0, 1, 2] = 9.0
    pool = nn.MaxPool2d(3, 2)
    pooled, switches = F.max_pool2d(x, 3, 2, return_indices=True)
    assert switches.flatten().tolist() == [7, 7]
    g = torch.tensor([[[[1.0, 2.0]]]])

    out, _ = reverse.unpool(g, switches, (3, 5))
    assert out[0, 0, 1, 2] == 3.0 and out.sum() == 3.0
    _close(out, _vjp(pool, x, g))
    # nn.MaxUnpool2d writes each value in turn: one of them is lost.
    overwritten = nn.MaxUnpool2d(3, 2)(g, switches, output_size=(3, 5))
    assert overwritten.sum() in (1.0, 2.0)


def test_unpool_is_the_adjoint_of_max_pooling_and_maxunpool_is_not():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 13, 13).round()  # rounding makes ties and shared switches common
    pooled, switches = F.max_pool2d(x, 3, 2, return_indices=True)
    flat = switches.flatten(2)
    shared = sum(len(p.unique()) < len(p) for p in flat.reshape(-1, flat.shape[-1]))
    assert shared > 0, "the example must have windows that share a switch"
    g = torch.randn_like(pooled)

    out, _ = reverse.unpool(g, switches, (13, 13))
    # With the switches held fixed, max pooling is a linear selection P; unpooling is P^T.
    selected = x.flatten(2).gather(2, flat).view_as(pooled)
    assert torch.allclose((selected * g).sum(), (x * out).sum(), rtol=1e-5)
    _close(out, _vjp(lambda t: F.max_pool2d(t, 3, 2), x, g))
    wrong = nn.MaxUnpool2d(3, 2)(g, switches, output_size=(13, 13))
    assert not torch.allclose((selected * g).sum(), (x * wrong).sum(), rtol=1e-3)


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3, 2, ceil_mode=True), nn.MaxPool2d(3, 2, padding=1),
                                  nn.MaxPool2d(2, 2, dilation=2, ceil_mode=True)])
def test_unpool_of_a_window_is_the_dense_unpool_cut_to_that_window(pool):
    torch.manual_seed(1)
    x = torch.randn(3, 2, 21, 20)
    pooled, switches = F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                                    ceil_mode=pool.ceil_mode, return_indices=True)
    H, W = pooled.shape[2:]
    origin = torch.tensor([[0, 0], [H - 3, W - 4], [2, 1]])
    g = torch.randn(3, 2, 3, 4)
    dense = torch.zeros_like(pooled)
    for k, (r, c) in enumerate(origin.tolist()):
        dense[k, :, r:r + 3, c:c + 4] = g[k]
    out, new_origin = reverse.unpool(g, switches, (21, 20), pool, origin)
    expected = _vjp(pool, x, dense)
    for k, (r, c) in enumerate(new_origin.tolist()):
        window = torch.zeros_like(expected[k])
        window[:, r:r + out.shape[2], c:c + out.shape[3]] = out[k]
        _close(window, expected[k])


# Filtering ---------------------------------------------------------------------------

def test_filter_restores_the_exact_input_size_zfnet_conv1():
    conv1 = models.zfnet().features[0]  # 7x7 at stride 2, padding 1: 224 -> 110
    g = torch.randn(1, 96, 110, 110)
    assert F.conv_transpose2d(g, conv1.weight, stride=2, padding=1).shape[-1] == 223
    out, _ = reverse.filter(g, conv1, (224, 224))
    assert out.shape == (1, 3, 224, 224)
    _close(out, torch.nn.grad.conv2d_input((1, 3, 224, 224), conv1.weight, g, stride=2, padding=1))


@pytest.mark.parametrize("conv", [
    nn.Conv2d(3, 8, 11, stride=4, padding=2),  # AlexNet conv1: done as output phases
    nn.Conv2d(3, 8, 7, stride=2, padding=1),  # ZFNet conv1
    nn.Conv2d(3, 8, 5, stride=3, padding=2),
    nn.Conv2d(8, 6, 5, stride=2),  # ZFNet conv2 (transposed directly)
    nn.Conv2d(8, 12, 3, padding=2, dilation=2, groups=4),
])
def test_filter_of_a_window_is_the_dense_filter_cut_to_that_window(conv):
    torch.manual_seed(2)
    x = torch.randn(3, conv.in_channels, 37, 41)
    H, W = conv(x).shape[2:]
    origin = torch.tensor([[0, 0], [H - 3, W - 2], [H // 2, 1]])
    g = torch.randn(3, conv.out_channels, 3, 2)
    dense = torch.zeros(3, conv.out_channels, H, W)
    for k, (r, c) in enumerate(origin.tolist()):
        dense[k, :, r:r + 3, c:c + 2] = g[k]
    out, new_origin = reverse.filter(g, conv, (37, 41), origin)
    expected = _vjp(lambda t: F.conv2d(t, conv.weight, None, conv.stride, conv.padding, conv.dilation,
                                       conv.groups), x, dense)
    for k, (r, c) in enumerate(new_origin.tolist()):
        window = torch.zeros_like(expected[k])
        window[:, r:r + out.shape[2], c:c + out.shape[3]] = out[k]
        _close(window, expected[k])
    whole, _ = reverse.filter(dense, conv, (37, 41))
    _close(whole, expected)


# Normalisation, averaging, rectification, windows -------------------------------------

@pytest.mark.parametrize("size", [5, 4])  # even sizes make the channel window lopsided
def test_normalize_is_the_vjp_of_local_response_norm(size):
    torch.manual_seed(3)
    lrn = nn.LocalResponseNorm(size, alpha=0.5, beta=0.75, k=2.0)  # a large alpha: a visible effect
    x, g = torch.randn(2, 9, 5, 4), torch.randn(2, 9, 5, 4)
    _close(reverse.normalize(g, x, lrn), _vjp(lrn, x, g))


@pytest.mark.parametrize("sizes", [((7, 9), (3, 4)), ((13, 13), (6, 6)), ((5, 5), (5, 5))])
def test_unaverage_is_the_vjp_of_adaptive_average_pooling(sizes):
    (H, W), out = sizes
    x, g = torch.randn(2, 3, H, W), torch.randn(2, 3, *out)
    _close(reverse.unaverage(g, (H, W)), _vjp(lambda t: F.adaptive_avg_pool2d(t, out), x, g))


def test_rectify_rules():
    g = torch.tensor([-2.0, -1.0, 1.0, 2.0])
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert reverse.rectify(g.clone(), mask, "deconvnet").tolist() == [0, 0, 1, 2]
    assert reverse.rectify(g.clone(), mask, "guided").tolist() == [0, 0, 1, 0]
    assert reverse.rectify(g.clone(), mask, "gradient").tolist() == [-2, 0, 1, 0]
    with pytest.raises(ValueError, match="deconvnet, guided, gradient"):
        reverse.rectify(g, mask, "relu")


def test_crop_and_reframe_move_windows():
    state = torch.arange(2 * 3 * 6 * 7.0).view(2, 3, 6, 7)
    image, origin = torch.tensor([1, 0, 1]), torch.tensor([[0, 0], [4, 5], [2, 3]])
    cut = reverse.crop(state, image, origin, (2, 2))
    for k, (n, (r, c)) in enumerate(zip(image.tolist(), origin.tolist())):
        assert torch.equal(cut[k], state[n, :, r:r + 2, c:c + 2])
    # Windows of 4x4 starting off the map at (-1, -2) move onto the map at (0, 0):
    x = torch.arange(16.0).view(1, 1, 4, 4)
    moved = reverse.reframe(x, torch.tensor([[-1, -2]]), torch.tensor([[0, 0]]), (4, 4))
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, :3, :2] = x[0, 0, 1:, 2:]
    assert torch.equal(moved, expected)


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


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3, 2, ceil_mode=True), nn.MaxPool2d(3, 2, padding=1)])
def test_max_pool_pools_as_the_module_does_and_unpool_takes_its_switches(pool):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 11)
    pooled, switches = reverse.max_pool(x, pool)
    assert torch.equal(pooled, pool(x))
    assert torch.equal(x.flatten(2).gather(2, switches.flatten(2)), pooled.flatten(2))
    g = torch.randn_like(pooled)
    _close(reverse.unpool(g, switches, (11, 11))[0], _vjp(pool, x, g))


def test_shared_switches_marks_the_windows_whose_switch_another_window_chose():
    p = pool_unpool(pooling_array(2, 2))  # the bright pixel is the switch of windows (0..1, 0..1)
    shared = reverse.shared_switches(p.switches[None, None], (7, 7))[0, 0]
    assert shared.shape == (3, 3) and shared.dtype == torch.bool
    assert torch.equal(shared, p.windows.flatten()[p.switches] > 1)
    assert shared[:2, :2].all()
    x = torch.arange(49.0).view(1, 1, 7, 7)  # increasing: each window's maximum is its own corner
    _, switches = F.max_pool2d(x, 3, 2, return_indices=True)
    assert not reverse.shared_switches(switches, (7, 7)).any()


def test_transposed_sizes_of_zfnet_and_the_output_padding_that_restores_them():
    torch.manual_seed(0)
    rows = reverse.transposed_sizes(models.zfnet(), 224)
    assert [r.layer for r in rows] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert rows[0] == ("conv1", 7, 2, 224, 110, 223, 1), "224 -> 110 -> 223 without output_padding"
    assert [(r.input, r.output) for r in rows[1:]] == [(55, 26), (13, 13), (13, 13), (13, 13)]
    net = models.mini_alexnet(10)
    convs = [m for m in models.sequence(net) if isinstance(m, nn.Conv2d)]
    for r, conv in zip(reverse.transposed_sizes(net, 64), convs):
        y = torch.zeros(1, conv.out_channels, r.output, r.output)
        back = F.conv_transpose2d(y, conv.weight, None, conv.stride, conv.padding,
                                  output_padding=r.output_padding)
        assert back.shape[-1] == r.input
