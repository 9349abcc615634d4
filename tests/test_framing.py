"""Frames cut from whole images equal frames cut from receptive-field crops (the
pixel-exact rule of each is tested in tests/figures/test_fig2.py)."""
import pytest
import torch

from zfcourse import framing, receptive
from zfcourse.models import map_size, mini_alexnet, mini_zfnet


@pytest.mark.parametrize("make,layer,H,W", [(mini_alexnet, "conv1", 64, 64), (mini_alexnet, "conv2", 64, 40),
                                            (mini_zfnet, "conv3", 64, 64), (mini_zfnet, "conv4", 48, 64)])
def test_image_frames_equal_frames_of_the_crops(make, layer, H, W):
    model = make(10)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, H, W, generator=g)
    size, stride, padding = receptive.receptive_field(model, layer)
    reach = map_size(model, layer, (H, W))                        # the units of the layer
    positions = torch.stack([torch.randint(reach[0], (6,), generator=g), torch.randint(reach[1], (6,), generator=g)], -1)
    positions[0] = 0
    positions[1] = torch.tensor(reach) - 1
    crops = receptive.crop_patches(model, images, layer, positions)
    expected = framing.frames(model, layer, crops, positions, (H, W))
    got = framing.image_frames(model, layer, images, positions)
    assert got.shape == expected.shape == (6, 3, min(size, H), min(size, W))
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)
    assert got.isnan().any() and not got.isnan().all()
