"""Top-k search against brute force, ties, input kinds, persistence and patches."""
import importlib.util
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from tests.helpers import seeded
from zfcourse import receptive
from zfcourse.models import activations, layer_index, mini_alexnet, sequence
from zfcourse.topk import (TopK, centre_on_object, chance_purity, purity, top_activations,
                           top_activations_layers)

N = 30


class Labelled(Dataset):
    """Items are (image, label) tuples, like torchvision's datasets."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], i % 3


@pytest.fixture(scope="module")
def model():
    # Double precision: a unit's value does not depend on the batch it is computed in,
    # so constructed ties are exact ties whatever the batch size.
    return seeded(lambda: mini_alexnet(10), double=True)


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    x = torch.rand(N, 3, 64, 64, dtype=torch.float64) - 0.3
    x[17] = x[2]                              # duplicates in different batches of 7
    x[4] = x[2]                               # ... and in the same batch as the original
    x[[5, 12, 20]] = 0                        # zero images: equal maps, flat conv1 maps
    return x


def brute_force(model, images, layer, k, batch_size=None):
    """Full activations, max per image over positions (first in row-major order), then per
    channel the k largest, lower index first among equal values: numpy, independently.

    With the search's ``batch_size`` the activations are bitwise the search's own: the
    last bits of a convolution may depend on the batch, and that is not under test."""
    model.eval()
    a = torch.cat([activations(model, x, layer)[layer] for x in images.split(batch_size or len(images))])
    width = a.shape[3] if a.dim() == 4 else 1
    a = a.reshape(len(images), a.shape[1], -1).numpy()
    score, where = a.max(axis=2), a.argmax(axis=2)
    n = np.arange(len(images))
    order = np.stack([np.lexsort((n, -score[:, c]))[:k] for c in range(a.shape[1])])   # [C, k]
    values = np.take_along_axis(score.T, order, 1)
    flat = np.take_along_axis(where.T, order, 1)
    return torch.from_numpy(values), torch.from_numpy(order), torch.from_numpy(np.stack([flat // width, flat % width], -1))


def assert_same(result, expected, exact=True):
    values, indices, positions = expected
    if exact:
        assert torch.equal(result.values, values)
    else:
        torch.testing.assert_close(result.values, values, rtol=1e-12, atol=1e-12)
    assert torch.equal(result.indices, indices)
    assert torch.equal(result.positions, positions)


@pytest.mark.parametrize("layer", ["conv1", "conv2", "pool2", "conv5", "pool5", "fc7"])
def test_matches_brute_force(model, images, layer):
    result = top_activations(model, images, layer, k=9, batch_size=7, progress=False)
    assert result.layer == layer and result.values.shape[1] == 9
    assert_same(result, brute_force(model, images, layer, 9, batch_size=7))


def test_one_pass_for_several_layers_matches_each_layer_alone(model, images):
    layers = ["conv4", "conv1", "pool2", "fc6"]
    results = top_activations_layers(model, images, layers, k=5, batch_size=7, progress=False)
    assert list(results) == layers
    for layer, result in results.items():
        assert result.layer == layer
        assert_same(result, brute_force(model, images, layer, 5, batch_size=7))
        # active: the images in which the channel's strongest unit is positive
        a = torch.cat([activations(model, x, layer)[layer] for x in images.split(7)])
        fires = (a.flatten(2).amax(2) if a.dim() == 4 else a) > 0
        assert torch.equal(result.active, fires.sum(0))
    assert 0 < results["conv4"].active.min() and results["conv1"].active.max() <= N
    with pytest.raises(ValueError, match="at least one layer"):
        top_activations_layers(model, images, [], progress=False)
    with pytest.raises(KeyError, match="conv9"):
        top_activations_layers(model, images, ["conv1", "conv9"], progress=False)


def test_ties_go_to_the_lower_index_and_the_first_position(model, images):
    result = top_activations(model, images, "conv5", k=9, batch_size=7, progress=False)
    # Duplicated images have equal scores and appear side by side, original first.
    checked = 0
    for c in range(result.values.shape[0]):
        row = result.indices[c].tolist()
        if 2 in row and result.values[c, row.index(2)] > 0:
            j = row.index(2)
            assert row[j:j + 3] == [2, 4, 17][: 9 - j]
            checked += 1
    assert checked > 3
    # A dead channel (all zeros everywhere): images 0..8, each at position (0, 0).
    conv5 = sequence(model)[layer_index(model, "conv5") - 1]
    saved = conv5.bias[0].item()
    with torch.no_grad():
        conv5.bias[0] = -1e6
    try:
        dead = top_activations(model, images, "conv5", k=9, batch_size=7, progress=False)
    finally:
        with torch.no_grad():
            conv5.bias[0] = saved
    assert (dead.values[0] == 0).all()
    assert dead.indices[0].tolist() == list(range(9))
    assert (dead.positions[0] == 0).all()
    # Zero images have spatially flat conv1 maps: their position is the first one.
    flat = top_activations(model, images[[5, 12, 20]], "conv1", k=3, progress=False)
    assert (flat.positions == 0).all() and flat.indices.tolist() == [[0, 1, 2]] * 48


def test_non_square_maps_of_a_plain_sequential():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(6, 5, 3, padding=1), torch.nn.ReLU()).double()
    x = torch.rand(13, 3, 18, 30, dtype=torch.float64)        # maps 16x28, 8x14, 8x14
    for layer in ("conv1", "pool1", "conv2"):
        result = top_activations(net, x, layer, k=4, batch_size=5, progress=False)
        assert_same(result, brute_force(net, x, layer, 4, batch_size=5))
    assert result.positions[..., 1].max() > 7                  # a column beyond the map's height


def test_input_kind_and_batch_size_do_not_change_the_result(model, images):
    expected = brute_force(model, images, "conv2", 9)
    # Values may differ in the last bits between batch sizes; the selection may not.
    for data, batch_size in [(images, 1), (images, 4), (images, N), (images, 1000),
                             (Labelled(images), 8), (TensorDataset(images), 30), (list(images), 11),
                             (DataLoader(Labelled(images), batch_size=5), None)]:
        result = top_activations(model, data, "conv2", batch_size=batch_size or 64, progress=False)
        assert_same(result, expected, exact=False)


def test_k_larger_than_the_dataset_shrinks_to_it(model, images):
    result = top_activations(model, images[:5], "pool5", k=9, batch_size=2, progress=False)
    assert result.values.shape == (96, 5) and result.positions.shape == (96, 5, 2)
    assert_same(result, brute_force(model, images[:5], "pool5", 5, batch_size=2))
    assert (result.indices.sort(dim=1).values == torch.arange(5)).all()


def test_positions_point_at_each_images_maximum(model, images):
    result = top_activations(model, images, "conv4", k=4, batch_size=9, progress=False)
    assert (result.values[:, :-1] >= result.values[:, 1:]).all()
    acts = activations(model, images, "conv4")["conv4"]
    for c in range(0, acts.shape[1], 7):
        for v, n, (h, w) in zip(result.values[c], result.indices[c], result.positions[c]):
            assert acts[n, c, h, w] == v == acts[n, c].max()


def test_search_runs_in_eval_mode_and_restores_the_model(model, images):
    model.train()                             # dropout before fc6 would make fc7 random
    try:
        result = top_activations(model, images, "fc7", k=3, progress=False)
        assert model.training
    finally:
        model.eval()
    assert_same(result, brute_force(model, images, "fc7", 3, batch_size=64))


def test_bad_inputs_raise(model, images):
    with pytest.raises(ValueError, match="in order"):
        top_activations(model, DataLoader(TensorDataset(images), shuffle=True), "conv1", progress=False)
    with pytest.raises(ValueError, match="no images"):
        top_activations(model, images[:0], "conv1", progress=False)
    with pytest.raises(ValueError, match="k must"):
        top_activations(model, images, "conv1", k=0, progress=False)
    with pytest.raises(ValueError, match="images must all have one size.*from index 4 are \\[3, 48, 48\\]"):
        top_activations(model, _Sizes([images[:4], images[4:8, :, :48, :48]]), "conv1", batch_size=4,
                        progress=False)


class _Sizes(torch.utils.data.Dataset):
    """The images of each tensor in turn: a dataset whose images change size."""

    def __init__(self, parts):
        self.items = [x for part in parts for x in part]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i], 0


def test_a_smaller_size_is_searched_as_the_brute_force_does(model, images):
    small = images[:, :, :40, :40]
    assert_same(top_activations(model, small, "conv2", k=3, progress=False),
                brute_force(model, small, "conv2", 3, batch_size=64))


def test_save_and_load_round_trip(model, images, tmp_path):
    result = top_activations(model, images, "conv3", k=5, progress=False)
    path = tmp_path / "top.pt"
    TopK(result.values[:1], result.indices[:1], result.positions[:1], "old").save(path)
    result.save(path)                         # replaces the old file
    loaded = TopK.load(path)
    assert loaded.layer == "conv3" and repr(loaded) == "TopK(layer='conv3', channels=128, k=5)"
    assert_same(loaded, (result.values, result.indices, result.positions))
    assert os.listdir(tmp_path) == ["top.pt"]


def test_crop_patches_are_the_receptive_fields_of_the_top_images(model, images):
    result = top_activations(model, images, "conv2", k=4, progress=False)
    size = receptive.receptive_field(model, "conv2")[0]
    every = result.crop_patches(model, images, batch_size=50)
    assert every.shape == (96, 4, 3, size, size)
    one = result.crop_patches(model, Labelled(images), channel=7)
    some = result.crop_patches(model, images, channel=[7, 3])
    assert one.shape == (1, 4, 3, size, size) and torch.equal(one[0], every[7])
    assert torch.equal(some, every[[7, 3]])
    for j in range(4):
        n, pos = result.indices[7, j], result.positions[7, j]
        assert torch.equal(one[0, j], receptive.crop_patches(model, images[n][None], "conv2", pos[None])[0])


@pytest.mark.skipif(importlib.util.find_spec("zfcourse.deconv") is None, reason="zfcourse/deconv.py is not written yet")
def test_project_projects_each_top_neuron(model, images):
    from zfcourse import deconv

    result = top_activations(model, images, "conv3", k=3, progress=False)
    proj = result.project(model, images, channel=[5, 9], rule="guided", batch_size=4)
    assert proj.shape == (2, 3, 3, 64, 64)
    for row, c in enumerate([5, 9]):
        expected = deconv.project(model, images[result.indices[c]], "conv3", torch.full((3,), c),
                                  result.positions[c], rule="guided")
        torch.testing.assert_close(proj[row], expected)
        assert proj[row].abs().sum() > 0
    cropped = result.project(model, images, channel=5, rule="guided", crop=True)
    assert torch.equal(cropped[0], receptive.crop_patches(model, proj[0], "conv3", result.positions[5]))
    dense = top_activations(model, images, "fc7", k=2, progress=False)
    expected = deconv.project(model, images[dense.indices[4]], "fc7", torch.full((2,), 4))
    torch.testing.assert_close(dense.project(model, Labelled(images), channel=4)[0], expected)


def test_purity_is_the_mean_share_of_the_most_common_group():
    groups = torch.tensor([[0, 0, 1], [2, 2, 2], [0, 1, 2]])
    assert purity(groups) == pytest.approx((2 / 3 + 1 + 1 / 3) / 3)
    with pytest.raises(ValueError, match="channels, k"):
        purity(torch.tensor([1, 2]))


def test_chance_purity_matches_the_expected_share_of_random_draws():
    # two equal groups, k = 2: the pair agrees half the time, so purity 0.75
    labels = torch.tensor([0, 1] * 50)
    assert chance_purity(labels, k=2, draws=20000) == pytest.approx(0.75, abs=0.01)
    assert chance_purity(torch.zeros(10), k=3) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        chance_purity(labels, k=101)


def test_centre_on_object_reads_the_mask_at_each_box_centre():
    model = mini_alexnet(10)
    size, stride, padding = receptive.receptive_field(model, "conv1")   # 11, 4, 2
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[1, :32] = 255                               # image 1: the object fills the top half
    # position (h, w) has its box centre at h * 4 - 2 + 5 = 4h + 3
    top = TopK(values=torch.ones(1, 2), indices=torch.tensor([[1, 1]]),
               positions=torch.tensor([[[2, 0], [10, 0]]]), layer="conv1")   # centres at rows 11, 43
    on, anywhere = centre_on_object(model, top, masks, map_size=15)
    assert on == 0.5
    rows = (torch.arange(15) * stride - padding + size // 2).clamp(0, 63)
    assert anywhere == pytest.approx(float((rows < 32).float().mean()) / 2)


def test_counts_and_inputs_are_checked_up_front(model, images):
    with pytest.raises(TypeError, match="k must be an int"):
        top_activations(model, images, "conv1", k=2.5, progress=False)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        top_activations(model, images, "conv1", batch_size=0, progress=False)
    with pytest.raises(TypeError, match="images must be a tensor"):
        top_activations(model, "photos/", "conv1", progress=False)
    with pytest.raises(ValueError, match="at least one layer; valid: conv1"):
        top_activations_layers(model, images, [], progress=False)
