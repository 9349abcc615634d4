"""The deconvnet pickers: they start at the strongest unit and follow the pickers."""
import matplotlib

matplotlib.use("Agg")

from types import SimpleNamespace

import pytest
import torch

from zfcourse import models
from zfcourse.explore import pooling_explorer, projection_explorer


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    return SimpleNamespace(model=models.mini_alexnet(10).eval(), device=torch.device("cpu"),
                           denormalize=lambda x: (x * 0.25 + 0.5).clamp(0, 1))


def _pickers(box):
    (image, layer), (channel, row, col) = box.children[0].children, box.children[1].children
    return image, layer, channel, row, col


def _strongest(world, x, layer):
    a = models.activations(world.model, x, layer)[layer][0]
    c = int(a.flatten(1).max(1).values.argmax())
    h, w = divmod(int(a[c].flatten().argmax()), a.shape[2])
    return c, h, w


def test_projection_explorer_starts_at_and_returns_to_the_strongest(world):
    torch.manual_seed(1)
    images = torch.randn(2, 3, 64, 64)
    image, layer, channel, row, col = _pickers(projection_explorer(world, images, layer="conv2"))
    assert (channel.value, row.value, col.value) == _strongest(world, images[:1], "conv2")
    assert (channel.max, row.max, col.max) == (95, 7, 7)
    layer.value = "pool1"
    assert (channel.value, row.value, col.value) == _strongest(world, images[:1], "pool1")
    assert (channel.max, row.max) == (47, 7)
    image.value = 1
    assert (channel.value, row.value, col.value) == _strongest(world, images[1:], "pool1")
    row.value = 0
    assert row.value == 0, "a position can be picked by hand"
    channel.value = (channel.value + 1) % 48
    a = models.activations(world.model, images[1:], "pool1")["pool1"][0, channel.value]
    assert (row.value, col.value) == divmod(int(a.flatten().argmax()), 8)


def test_projection_explorer_rejects_dense_layers(world):
    with pytest.raises(KeyError, match="valid"):
        projection_explorer(world, torch.zeros(1, 3, 64, 64), layer="fc6")


def test_pooling_explorer_has_row_and_column_sliders():
    box = pooling_explorer(row=4, col=2)
    row, col = box.children[0].children
    assert (row.value, col.value, row.max) == (4, 2, 6)
    col.value = 3  # redraws without error
