"""Invariance curves: the transformations, zero at the identity, batching, brute force."""
import pytest
import torch

from tests.helpers import seeded
from zfcourse.invariance import Invariance, invariance_curves, transform
from zfcourse.models import activations, mini_alexnet


@pytest.fixture(scope="module")
def model():
    return seeded(lambda: mini_alexnet(10), he=True, double=True)


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(3, 3, 64, 64, dtype=torch.float64)


def test_integer_translations_shift_the_image_and_fill_the_border():
    x = torch.rand(2, 3, 10, 12, dtype=torch.float64)
    down = transform(x, "translate_y", 3, fill=-1.0)
    torch.testing.assert_close(down[:, :, 3:], x[:, :, :-3])
    assert (down[:, :, :3] == -1).all()
    left = transform(x, "translate_x", -4, fill=[0.1, 0.2, 0.3])
    torch.testing.assert_close(left[:, :, :, :-4], x[:, :, :, 4:])
    torch.testing.assert_close(left[0, :, :, -4:], torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
                               .view(3, 1, 1).expand(3, 10, 4))


def test_rotation_by_a_right_angle_is_counter_clockwise_and_exact():
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(transform(x, "rotate", 90), torch.rot90(x, 1, dims=(2, 3)))
    torch.testing.assert_close(transform(x, "rotate", -90), torch.rot90(x, -1, dims=(2, 3)))
    # 45 degrees leaves the corners to the fill colour and keeps the centre
    r = transform(x, "rotate", 45, fill=7.0)
    assert (r[..., 0, 0] == 7).all() and (r[..., 3:5, 3:5] != 7).all()


def test_scaling_magnifies_about_the_centre():
    x = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    x[..., 6:10, 6:10] = 1.0                                     # a 4x4 square at the centre
    big = transform(x, "scale", 2.0)
    assert big[..., 4:12, 4:12].min() > 0.4 and big[..., :3, :].abs().max() == 0
    torch.testing.assert_close(big[..., 5:11, 5:11], torch.ones(1, 1, 6, 6, dtype=torch.float64))
    small = transform(torch.ones(1, 1, 16, 16, dtype=torch.float64), "scale", 0.5, fill=0.0)
    assert small[..., 0, :].max() == 0 and small[..., 8, 8] == 1       # shrunk: the border is the fill
    # one value per image
    both = transform(torch.cat([x, x]), "scale", torch.tensor([1.0, 2.0]))
    assert torch.equal(both[0], x[0]) and torch.equal(both[1], big[0])


def test_curves_are_zero_at_the_identity_and_match_brute_force(model, images):
    labels = torch.tensor([2, 7, 7])
    values = torch.tensor([-6.0, 0.0, 3.0])
    result = invariance_curves(model, images, labels, "translate_y", values, layers=["conv1", "pool5", "fc7"],
                               fill=0.25, batch_size=4)
    assert isinstance(result, Invariance) and result.probability.shape == (3, 3)
    with torch.no_grad():
        p0 = model(images).softmax(1)[torch.arange(3), labels]
    ref = activations(model, images, ["conv1", "pool5", "fc7"])
    for v, value in enumerate(values.tolist()):
        moved = transform(images, "translate_y", value, fill=0.25)
        acts = activations(model, moved, ["conv1", "pool5", "fc7"])
        with torch.no_grad():
            p = model(moved).softmax(1)[torch.arange(3), labels]
        torch.testing.assert_close(result.probability[v], p, rtol=0, atol=1e-12)
        for layer in result.layers:
            expected = (acts[layer] - ref[layer]).flatten(1).norm(dim=1)
            torch.testing.assert_close(result.distance[layer][v], expected, rtol=1e-9, atol=1e-9)
    for layer in result.layers:
        assert result.distance[layer][1].abs().max() < 1e-9               # the identity
        assert (result.distance[layer][[0, 2]] > 1e-3).all()              # the others move every layer
        torch.testing.assert_close(result.norm[layer], ref[layer].flatten(1).norm(dim=1))
        torch.testing.assert_close(result.relative(layer), result.distance[layer] / result.norm[layer])
    torch.testing.assert_close(result.probability[1], p0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind,values", [("scale", [0.8, 1.0, 1.3]), ("rotate", [0, 15, 180]),
                                         ("translate_x", [-5, 0, 5])])
def test_batching_does_not_change_the_curves(model, images, kind, values):
    whole = invariance_curves(model, images, None, kind, values, batch_size=100)
    one = invariance_curves(model, images, None, kind, values, batch_size=1)
    torch.testing.assert_close(one.probability, whole.probability, rtol=0, atol=1e-12)
    for layer in whole.layers:
        torch.testing.assert_close(one.distance[layer], whole.distance[layer], rtol=1e-9, atol=1e-9)
        assert whole.distance[layer][values.index(1.0 if kind == "scale" else 0)].max() < 1e-9
    with torch.no_grad():
        assert torch.equal(whole.target, model(images).argmax(1))


def test_bad_arguments_raise(model, images):
    with pytest.raises(ValueError, match="unknown transformation"):
        invariance_curves(model, images, None, "shear", [0, 1])
    with pytest.raises(ValueError, match="values"):
        invariance_curves(model, images, None, "rotate")
    with pytest.raises(ValueError, match="positive"):
        transform(images, "scale", 0.0)
    with pytest.raises(ValueError, match="one per image"):
        invariance_curves(model, images, [1, 2], "rotate", [0, 90])


def hand_made(kind, values, conv1, fc7):
    """An Invariance with given relative distances ``[V, N]`` (norms 2)."""
    n = len(conv1[0])
    return Invariance(kind=kind, values=torch.tensor(values), probability=torch.zeros(len(values), n),
                      target=torch.zeros(n, dtype=torch.long), norm={"conv1": torch.full((n,), 2.0),
                                                                     "fc7": torch.full((n,), 2.0)},
                      distance={"conv1": 2 * torch.tensor(conv1), "fc7": 2 * torch.tensor(fc7)})


def test_the_smallest_change_is_next_to_the_identity():
    curves = hand_made("scale", [0.8, 0.9, 1.0, 1.1], conv1=[[9.0, 9.0], [0.5, 0.7], [0, 0], [0.3, 0.5]],
                       fc7=[[9.0, 9.0], [0.1, 0.1], [0, 0], [0.2, 0.0]])
    assert curves.neighbours == [1, 3]
    moved = curves.smallest_change()
    assert list(moved) == ["conv1", "fc7"]
    assert moved["conv1"] == pytest.approx(0.5) and moved["fc7"] == pytest.approx(0.1)
    at_the_start = hand_made("rotate", [0.0, 15.0, 30.0], conv1=[[0.0], [0.8], [0.9]], fc7=[[0.0], [0.2], [0.3]])
    assert at_the_start.neighbours == [1]
    assert at_the_start.smallest_change()["conv1"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="identity"):
        hand_made("rotate", [15.0, 30.0], conv1=[[0.8], [0.9]], fc7=[[0.2], [0.3]]).neighbours
