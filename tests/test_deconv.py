"""The explicit deconvnet against autograd under each ReLU rule, batching, bad input, and
a model left as it was found."""
import copy

import pytest
import torch
from torch import nn

from tests.helpers import seeded
from zfcourse import models
from zfcourse.deconv import RULES, mean_similarity, outside_share, project, project_autograd


@pytest.fixture(scope="module")
def minis():
    return {"mini_alexnet": seeded(lambda: models.mini_alexnet(10), he=True),
            "mini_zfnet": seeded(lambda: models.mini_zfnet(10), 1, he=True)}


@pytest.fixture(scope="module")
def big():
    return {"alexnet": seeded(models.alexnet, he=True), "zfnet": seeded(models.zfnet, 1, he=True)}


@pytest.fixture(scope="module")
def x64():
    torch.manual_seed(10)
    return torch.randn(3, 3, 64, 64)


@pytest.fixture(scope="module")
def x224():
    torch.manual_seed(11)
    return torch.randn(2, 3, 224, 224)


def assert_same(a, b, rtol=1e-5):
    """Equal to float precision, neuron by neuron, relative to each neuron's largest value;
    every neuron's projection must hold something (zeros against zeros prove nothing)."""
    assert a.shape == b.shape
    a, b = a.flatten(-3), b.flatten(-3)
    scale = b.abs().amax(-1, keepdim=True)
    assert (scale > 0).all(), f"{int((scale == 0).sum())} of {scale.numel()} projections are zero"
    worst = ((a - b).abs() / scale.clamp_min(1e-30)).max()
    assert ((a - b).abs() <= rtol * scale).all(), f"max relative difference {worst:.2e}"
    return scale


def _channels(model, images, layer, m=None, seed=0):
    """Random channels, per image among those that fire somewhere in it."""
    act = models.activations(model, images, layer)[layer]
    fires = act.flatten(2).amax(2) > 0 if act.dim() == 4 else act > 0
    g = torch.Generator().manual_seed(seed)
    picks = []
    for n in range(len(images)):
        live = fires[n].nonzero()[:, 0]
        assert len(live), f"no channel of {layer} fires in image {n}"
        picks.append(live[torch.randint(len(live), (m or 1,), generator=g)])
    picks = torch.stack(picks)
    return picks[:, 0] if m is None else picks


def _positions(model, images, layer, channel):
    """``(channel, position)``: corners and the centre of the map (each with a channel that
    fires there), then random positions where the neuron fires."""
    act = models.activations(model, images, layer)[layer]
    H, W = act.shape[2:]
    fixed = torch.tensor([[0, 0], [H - 1, W - 1], [0, W - 1], [H - 1, 0], [H // 2, W // 2]])
    g = torch.Generator().manual_seed(1)
    rows, channels = [], channel.clone()
    for n in range(len(images)):
        picks = []
        for j, c in enumerate(channel[n].tolist()):
            if j < len(fixed):
                h, w = fixed[(n + j) % len(fixed)].tolist()
                if act[n, c, h, w] <= 0 and act[n, :, h, w].max() > 0:
                    channels[n, j] = act[n, :, h, w].argmax()
                if act[n, channels[n, j], h, w] > 0:
                    picks.append(torch.tensor([h, w]))
                    continue
            live = (act[n, channels[n, j]] > 0).nonzero()
            picks.append(live[torch.randint(len(live), (1,), generator=g)][0])
        rows.append(torch.stack(picks))
    return channels, torch.stack(rows)


# Explicit pass == autograd -----------------------------------------------------------

@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", ["mini_alexnet", "mini_zfnet"])
def test_minis_match_autograd_at_every_layer(minis, x64, name, rule):
    model = minis[name]
    for layer in models.layer_names(model):
        channel = _channels(model, x64, layer)
        explicit = project(model, x64, layer, channel, rule=rule)
        scale = assert_same(explicit, project_autograd(model, x64, layer, channel, rule=rule))
        assert (scale > 0).any(), f"{layer}: all projections are zero, the comparison proves nothing"


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", ["mini_alexnet", "mini_zfnet"])
def test_minis_match_autograd_at_corners_and_random_positions(minis, x64, name, rule):
    model = minis[name]
    for layer in [n for n in models.layer_names(model) if not n.startswith("fc")]:
        channel = _channels(model, x64, layer, m=7, seed=2)
        channel, position = _positions(model, x64, layer, channel)
        explicit = project(model, x64, layer, channel, position, rule=rule, chunk_size=5)
        assert explicit.shape == (3, 7, 3, 64, 64)
        assert_same(explicit, project_autograd(model, x64, layer, channel, position, rule=rule))


BIG_CASES = [("alexnet", "conv5", rule) for rule in RULES] + [
    ("alexnet", "pool1", "deconvnet"), ("alexnet", "conv2", "guided"), ("alexnet", "pool5", "gradient"),
    ("alexnet", "fc6", "deconvnet"),
    ("zfnet", "conv1", "guided"), ("zfnet", "norm2", "gradient"), ("zfnet", "conv4", "deconvnet"),
]


@pytest.mark.parametrize("name,layer,rule", BIG_CASES)
def test_alexnet_and_zfnet_match_autograd(big, x224, name, layer, rule):
    model = big[name]
    channel = _channels(model, x224, layer, seed=3)
    assert_same(project(model, x224, layer, channel, rule=rule),
                project_autograd(model, x224, layer, channel, rule=rule))


def test_alexnet_matches_autograd_at_corners(big, x224):
    model = big["alexnet"]
    channel = _channels(model, x224, "conv3", m=2, seed=4)
    channel, position = _positions(model, x224, "conv3", channel)
    assert_same(project(model, x224, "conv3", channel, position),
                project_autograd(model, x224, "conv3", channel, position))


def _custom():
    """Strides, padding, ceil mode, dilation, groups, an even LRN and a real adaptive average."""
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=3, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), nn.LocalResponseNorm(4, alpha=0.5),
        nn.Conv2d(8, 12, 3, padding=2, dilation=2, groups=4), nn.ReLU(),
        nn.MaxPool2d(2, 2, dilation=2, ceil_mode=True),
        nn.Conv2d(12, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Dropout(), nn.Linear(144, 10), nn.ReLU(), nn.Linear(10, 5),
    )


@pytest.mark.parametrize("rule", RULES)
def test_any_sequence_of_supported_modules(rule):
    model = _custom()
    images = torch.randn(2, 3, 50, 47)
    assert models.layer_names(model) == ["conv1", "pool1", "norm1", "conv2", "pool2", "conv3", "fc4", "fc5"]
    for layer in models.layer_names(model):
        channel = _channels(model, images, layer, m=4, seed=6)
        position = None
        if not layer.startswith("fc"):
            channel, position = _positions(model, images, layer, channel)
        assert_same(project(model, images, layer, channel, position, rule=rule, chunk_size=3),
                    project_autograd(model, images, layer, channel, position, rule=rule))


@pytest.mark.parametrize("rule", RULES)
def test_lrn_identity_option(rule):
    model = _custom()
    images = torch.randn(2, 3, 50, 47)
    channel = _channels(model, images, "conv3", seed=7)
    through = project(model, images, "conv3", channel, rule=rule, lrn="identity")
    assert_same(through, project_autograd(model, images, "conv3", channel, rule=rule, lrn="identity"))
    backward = project(model, images, "conv3", channel, rule=rule, lrn="backward")
    assert_same(backward, project_autograd(model, images, "conv3", channel, rule=rule, lrn="backward"))
    assert not torch.allclose(through, backward, rtol=1e-2, atol=0)
    assert torch.equal(through, project(model, images, "conv3", channel, rule=rule))   # the default


def test_gradient_rule_is_the_activation_times_its_gradient(minis, x64):
    # Independent of project_autograd: the model's own forward pass and a hook.
    model = minis["mini_zfnet"]
    seen = {}
    handle = models.get_layer(model, "conv4").register_forward_hook(lambda m, i, o: seen.update(out=o))
    images = x64.clone().requires_grad_()
    model(images)
    handle.remove()
    act = seen["out"]
    c = 5
    h, w = divmod(act[1, c].argmax().item(), act.shape[-1])
    (grad,) = torch.autograd.grad(act[1, c, h, w], images)
    assert_same(project(model, x64[1:], "conv4", c, rule="gradient")[0], act[1, c, h, w].detach() * grad[1])


def test_the_rules_differ(big, x224):
    model = big["alexnet"]
    out = {rule: project(model, x224, "conv4", torch.tensor([3, 7]), rule=rule) for rule in RULES}
    for a, b in [("deconvnet", "guided"), ("deconvnet", "gradient"), ("guided", "gradient")]:
        assert not torch.allclose(out[a], out[b], rtol=1e-2, atol=1e-3 * out[b].abs().max()), (a, b)


def test_overwriting_switches_would_be_caught(minis, x64, monkeypatch):
    """The equality tests fail if unpooling overwrites (as nn.MaxUnpool2d) instead of adding."""
    model = minis["mini_alexnet"]
    channel = _channels(model, x64, "conv3")
    reference = project_autograd(model, x64, "conv3", channel)
    monkeypatch.setattr(torch.Tensor, "scatter_add_", lambda self, dim, index, src: self.scatter_(dim, index, src))
    with pytest.raises(AssertionError, match="relative difference"):
        assert_same(project(model, x64, "conv3", channel), reference)


# Batching ----------------------------------------------------------------------------

def test_many_neurons_of_one_image_in_one_call(minis, x64):
    model = minis["mini_zfnet"]
    channel = torch.arange(96)[::8].expand(2, 12)  # 12 conv5 channels of each of 2 images
    together = project(model, x64[:2], "conv5", channel, chunk_size=5)
    assert together.shape == (2, 12, 3, 64, 64)
    for n in range(2):
        for j, c in enumerate(channel[n].tolist()):
            assert_same(together[n, j], project(model, x64[n:n + 1], "conv5", c)[0])
    assert_same(together, project_autograd(model, x64[:2], "conv5", channel))


def test_positions_and_channels_in_every_form(minis, x64):
    model = minis["mini_alexnet"]
    act = models.activations(model, x64, "pool1")["pool1"]
    one = project(model, x64, "pool1", 4, (2, 3))
    assert one.shape == (3, 3, 64, 64)
    assert_same(one, project(model, x64, "pool1", torch.full((3,), 4), torch.tensor([[2, 3]] * 3)))
    assert_same(one, project(model, x64, "pool1", torch.full((3, 1), 4), torch.tensor([2, 3]))[:, 0])
    # position=None is each image's strongest position in that channel:
    strongest = [divmod(act[n, 4].argmax().item(), act.shape[-1]) for n in range(3)]
    assert_same(project(model, x64, "pool1", 4), project(model, x64, "pool1", 4, torch.tensor(strongest)))


# The model as it was found -------------------------------------------------------------

def _hooks(model):
    return sum(len(d) for m in model.modules() for d in (
        m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks))


@pytest.mark.parametrize("train", [True, False])
def test_model_left_as_found(train, x64):
    model = seeded(lambda: models.mini_alexnet(10), 7).train(train)
    assert any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules())
    plain = copy.deepcopy(model).eval()
    for m in plain.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    images = x64.clone()
    before = models.activations(model, images, "conv2")["conv2"].clone()
    for f in (project, project_autograd):
        for rule in RULES:
            out = f(model, images, "conv2", 3, rule=rule)
            # Dropout is the identity and in-place ReLUs change nothing: the same as eval mode without them.
            assert_same(out, f(plain, images, "conv2", 3, rule=rule), rtol=1e-6)
    assert _hooks(model) == 0
    assert model.training == train and all(m.training == train for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    assert torch.equal(images, x64)
    assert torch.equal(models.activations(model.eval(), images, "conv2")["conv2"], before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_images_device(minis, x64):
    model = copy.deepcopy(minis["mini_zfnet"]).cuda()
    channel = _channels(model.cpu(), x64, "conv4", m=5).cuda()
    model.cuda()
    out = project(model, x64.cuda(), "conv4", channel)
    assert out.device.type == "cuda"
    assert_same(out.cpu(), project(model.cpu(), x64, "conv4", channel.cpu()), rtol=1e-4)


# Bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("f", [project, project_autograd])
def test_bad_input_is_named(minis, x64, f):
    model = minis["mini_alexnet"]
    with pytest.raises(ValueError, match=r"channel 48 is out of range: conv1 has 48 channels, 0\.\.47"):
        f(model, x64, "conv1", 48)
    with pytest.raises(ValueError, match="channel -1 is out of range"):
        f(model, x64, "conv1", torch.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match=r"position \(16, 0\) is outside conv1's 16x16 map"):
        f(model, x64, "conv1", 0, (16, 0))
    with pytest.raises(ValueError, match=r"position \(0, -2\) is outside pool2's 4x4 map"):
        f(model, x64, "pool2", 0, torch.tensor([[0, 1], [0, -2], [3, 3]]))
    with pytest.raises(KeyError, match="unknown layer 'conv9'; this model has conv1, pool1, conv2"):
        f(model, x64, "conv9", 0)
    with pytest.raises(ValueError, match="fc6 is a dense layer and has no positions"):
        f(model, x64, "fc6", 0, (0, 0))
    with pytest.raises(ValueError, match="unknown rule 'relu'; choose one of deconvnet, guided, gradient"):
        f(model, x64, "conv1", 0, rule="relu")
    with pytest.raises(ValueError, match="unknown lrn 'none'; choose one of identity, backward"):
        f(model, x64, "conv1", 0, lrn="none")
    with pytest.raises(ValueError, match=r"with N = 3 images; got shape \[2\]"):
        f(model, x64, "conv1", torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="channel must be an int or a LongTensor"):
        f(model, x64, "conv1", 1.0)
    with pytest.raises(ValueError, match=r"position must be None, \(h, w\) or a LongTensor shaped \[3, 2\]"):
        f(model, x64, "conv1", 0, torch.zeros(3, 1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"16x16 images are too small for conv5.*smallest it takes is 31x31"):
        f(models.alexnet(), torch.randn(1, 3, 16, 16), "conv5", 0)
    with pytest.raises(ValueError, match="expected 3 colour channels"):
        f(model, torch.randn(1, 1, 64, 64), "conv1", 0)
    with pytest.raises(ValueError, match="at least one image"):
        f(model, x64[:0], "conv1", 0)
    with pytest.raises(ValueError, match=r"expected a batch of images shaped \[N, 3, H, W\]"):
        f(model, torch.randn(3, 64, 64), "conv1", 0)


def test_unsupported_modules_are_named():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sigmoid(), nn.MaxPool2d(2))
    with pytest.raises(ValueError, match="does not support Sigmoid .*supported modules: Conv2d, ReLU, MaxPool2d"):
        project(model, torch.randn(1, 3, 9, 9), "pool1", 0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU())
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        project(model, torch.randn(1, 3, 9, 9), "conv1", 0)


def test_outside_share():
    x = torch.zeros(2, 3, 10, 10)
    x[0, :, 2:5, 3:6] = 1
    x[1, :, 0, 0] = 1
    x[1, :, 3, 3] = 1
    share = outside_share(x, (2, 3, 5, 6))
    assert torch.allclose(share, torch.tensor([0.0, 0.5]))
    assert outside_share(torch.zeros(3, 4, 4), (0, 0, 2, 2)) == 0
    assert outside_share(torch.ones(3, 4, 4), (-5, -5, 20, 20)) == 0, "a box past the border covers the image"


def test_mean_similarity_over_pairs_of_different_neurons():
    a, b = torch.zeros(3, 4, 4), torch.zeros(3, 4, 4)
    a[0, 0, 0], b[1, 2, 3] = 2.0, -1.0
    assert mean_similarity(torch.stack([a, 3 * a, a])) == pytest.approx(1.0)
    assert mean_similarity(torch.stack([a, b])) == 0.0
    assert mean_similarity(torch.stack([a, -a])) == pytest.approx(-1.0)
    assert mean_similarity(torch.stack([a, a, b])) == pytest.approx(2 / 6), "one similar pair of three"
    with pytest.raises(ValueError, match="at least two"):
        mean_similarity(a[None])


def _chunks(model, images, neurons, **kw):
    from zfcourse.deconv import projection_chunks

    pieces = list(projection_chunks(model, images, neurons, **kw))
    return {layer: torch.cat([p for name, _, p in pieces if name == layer]) for layer in neurons}, pieces


def test_projection_chunks_match_project_neuron_by_neuron(minis, x64):
    model = minis["mini_zfnet"]
    g = torch.Generator().manual_seed(5)
    neurons = {}
    for layer in ("conv1", "pool2", "conv5"):
        act = models.activations(model, x64, layer)[layer]
        live = (act > 0).nonzero()                       # [K, 4]: image, channel, h, w
        picked = live[torch.randint(len(live), (7,), generator=g)]
        corner = live[(live[:, 2] == 0) & (live[:, 3] == 0)]
        picked[0] = corner[0]                            # a corner: the box reaches past the border
        neurons[layer] = (picked[:, 0], picked[:, 1], picked[:, 2:])
    full, pieces = _chunks(model, x64, neurons, rule="guided", chunk_size=3)
    assert [(layer, part.start) for layer, part, _ in pieces] == \
        [(layer, start) for layer in neurons for start in (0, 3, 6)]
    for layer, (image, channel, position) in neurons.items():
        assert_same(full[layer], project(model, x64[image], layer, channel, position, rule="guided"))


def test_projection_chunks_bad_input_is_named(minis, x64):
    model = minis["mini_zfnet"]
    one = (torch.tensor([0]), torch.tensor([1]), torch.tensor([[0, 0]]))
    with pytest.raises(ValueError, match="channel 96 is out of range"):
        _chunks(model, x64, {"conv5": (torch.tensor([0]), torch.tensor([96]), torch.tensor([[0, 0]]))})
    with pytest.raises(ValueError, match="image 3 is out of range"):
        _chunks(model, x64, {"conv5": (torch.tensor([3]), torch.tensor([0]), torch.tensor([[0, 0]]))})
    with pytest.raises(ValueError, match="dense layer"):
        _chunks(model, x64, {"fc6": one})
    with pytest.raises(ValueError, match="outside"):
        _chunks(model, x64, {"conv1": (torch.tensor([0]), torch.tensor([1]), torch.tensor([[0, 99]]))})
    with pytest.raises(ValueError, match="at least one layer"):
        _chunks(model, x64, {})
    with pytest.raises(ValueError, match="must hold integers"):
        _chunks(model, x64, {"conv1": (torch.tensor([0.0]), torch.tensor([1]), torch.tensor([[0, 0]]))})


@pytest.mark.parametrize("rule", RULES)
def test_a_conv1_unit_projects_to_its_activation_times_its_filter_inside_its_box(rule):
    # The reference shares no code with project: a conv1 unit's reverse pass is the
    # transposed convolution of a one-hot map seeded with the unit's activation.
    model = seeded(lambda: models.mini_zfnet(10), double=True)
    conv = models.conv_of(model, "conv1")
    images = torch.randn(3, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    acts = models.activations(model, images, "conv1")["conv1"]
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    for n, (c, h, w) in enumerate([(5, 0, 0), (17, 13, 20), (30, 31, 31)]):
        live = acts[n, :, h, w].argmax() if acts[n, c, h, w] <= 0 else c   # a unit that fires
        a = float(acts[n, live, h, w])
        assert a > 0
        padded = torch.zeros(3, 64 + 2 * p + k, 64 + 2 * p + k, dtype=torch.float64)
        padded[:, h * s: h * s + k, w * s: w * s + k] = a * conv.weight[live]
        expected = padded[:, p: p + 64, p: p + 64]
        got = project(model, images[n:n + 1], "conv1", int(live), (h, w), rule)[0]
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
