"""Frames and the Fig. 2 figures of the top-k search."""
import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from zfcourse import models, receptive  # noqa: E402
from zfcourse.figures import fig2  # noqa: E402
from zfcourse.topk import top_activations  # noqa: E402

NAN = float("nan")


@pytest.fixture(scope="module")
def world(mini_world):
    return mini_world


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(20, 3, 64, 64)


@pytest.fixture(scope="module")
def tops(world, images):
    return {layer: top_activations(world.model, images, layer, k=9, progress=False) for layer in ("conv1", "conv2", "conv5")}


def coordinates(H, W):
    """An image whose channels are its own row and column numbers (and ones)."""
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    return torch.stack([rows, cols, torch.ones(H, W)]).float()


@pytest.mark.parametrize("layer,H,W", [("conv2", 64, 64), ("conv3", 64, 64), ("conv2", 64, 40)])
def test_frames_show_exactly_the_pixels_in_both_the_image_and_the_box(world, layer, H, W):
    # mini AlexNet: conv2 box 51 (fits a 64 px side, not a 40 px one), conv3 box 99 (fits neither)
    model = world.model
    size = receptive.receptive_field(model, layer)[0]
    image = coordinates(H, W)
    rows, cols = models.map_size(model, layer, (H, W))        # the last position: a corner
    positions = torch.tensor([[0, 0], [3, 2], [rows - 1, cols - 1], [2, 0]])
    crops = receptive.crop_patches(model, image.expand(4, -1, -1, -1), layer, positions)
    framed = fig2.frames(model, layer, crops, positions, (H, W))
    assert framed.shape == (4, 3, min(size, H), min(size, W))
    for frame, position in zip(framed, positions.tolist()):
        top, left, bottom, right = receptive.patch_box(model, layer, position)
        fy, fx = (top if size <= H else 0), (left if size <= W else 0)
        for y in range(frame.shape[1]):
            for x in range(frame.shape[2]):
                r, c = fy + y, fx + x
                if 0 <= r < H and 0 <= c < W and top <= r < bottom and left <= c < right:
                    assert frame[:, y, x].tolist() == [r, c, 1]
                else:
                    assert frame[:, y, x].isnan().all()


def test_panels_frame_projections_and_patches_alike(world, images, tops):
    proj, patches = fig2.panels(world, tops["conv2"], images, [4, 1])
    assert proj.shape == patches.shape == (2, 9, 3, 51, 51)
    assert torch.equal(proj.isnan(), patches.isnan())
    shown = ~patches.isnan()
    assert shown.any() and not shown.all()                    # conv2 boxes reach past a 64 px image
    assert proj[shown].min() >= 0 and proj[shown].max() <= 1 and patches[shown].max() <= 1
    # patch frames are the denormalised pixels of the top images
    top = tops["conv2"]
    n, position = top.indices[1, 0], top.positions[1, 0]
    t, l, b, r = receptive.patch_box(world.model, "conv2", position.tolist(), image_size=64)
    t0, l0, _, _ = receptive.patch_box(world.model, "conv2", position.tolist())
    assert torch.equal(patches[1, 0, :, t - t0:b - t0, l - l0:r - l0], world.denormalize(images[n, :, t:b, l:r]))
    deep, _ = fig2.panels(world, tops["conv5"], list(zip(images, range(20))), [0])   # (image, label) items
    assert deep.shape == (1, 9, 3, 64, 64)


def test_fig2_has_a_pair_of_panels_per_channel_and_a_row_per_layer(world, images, tops):
    fig = fig2.fig2(world, tops, images, {"conv1": [0, 5, 9], "conv5": [3]})
    axes = fig.axes
    assert len(axes) == 2 * 6
    titles = [ax.get_title() for ax in axes]
    assert titles[:6] == ["conv1 ch 0: projections", "patches", "conv1 ch 5: projections", "patches",
                          "conv1 ch 9: projections", "patches"]
    assert titles[6:8] == ["conv5 ch 3: projections", "patches"] and not any(ax.axison for ax in axes[8:])
    assert axes[0].get_images()[0].get_array().shape[:2] == (3 * 11 + 4, 3 * 11 + 4)   # 9 conv1 frames, 1 px gaps
    plt.close(fig)


def test_channel_figure_shows_each_top_image_with_its_box(world, images, tops):
    fig = fig2.channel_figure(world, tops["conv2"], images, 7, captions=lambda n: f"picture {n}")
    boxes = [ax for ax in fig.axes if ax.patches]
    assert len(boxes) == 9
    for j, ax in enumerate(boxes):
        n = int(tops["conv2"].indices[7, j])
        assert ax.get_title().startswith(f"picture {n}\n")
        t, l, b, r = receptive.patch_box(world.model, "conv2", tops["conv2"].positions[7, j].tolist(), image_size=64)
        rect = ax.patches[0]
        assert (rect.get_x(), rect.get_y(), rect.get_width(), rect.get_height()) == (l - 0.5, t - 0.5, r - l, b - t)
    plt.close(fig)
