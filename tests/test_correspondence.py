"""Correspondence analysis: the Hamming score, parts from masks, and same part versus random parts."""
import pytest
import torch
from torch import nn

from zfcourse.correspondence import (box_masks, consistency, correspondence, feature_differences, part_boxes,
                                     random_boxes, sign_hamming)


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 4),
    ).double().eval()


def test_sign_hamming_and_consistency_by_hand():
    eps = torch.tensor([[1.0, -1.0, 0.0, 2.0],
                        [3.0, 1.0, 0.0, -3.0],
                        [0.0, 0.0, 0.0, 0.0]])
    # signs (1, -1, 0, 1), (1, 1, 0, -1), (0, 0, 0, 0): they differ in 2, 3 and 3 of 4 features
    expected = torch.tensor([[0, 0.5, 0.75], [0.5, 0, 0.75], [0.75, 0.75, 0]])
    torch.testing.assert_close(sign_hamming(eps), expected)
    assert consistency(eps) == pytest.approx((0.5 + 0.75 + 0.75) / 3)
    assert consistency(eps[:2] * torch.tensor([[5.0], [0.1]])) == pytest.approx(0.5)   # only signs count
    assert consistency(torch.stack([eps[0]] * 4)) == 0
    with pytest.raises(ValueError, match="at least two"):
        consistency(eps[:1])


def test_masking_the_same_part_is_more_consistent_than_masking_random_parts():
    """Six images share one textured patch at one place; masking it changes every image's
    features near it in the same way, masking random boxes does not."""
    torch.manual_seed(0)
    model = small_net()
    images = torch.rand(6, 3, 24, 24, dtype=torch.float64) - 0.5
    images[:, :, 8:16, 10:18] = 2 * torch.rand(3, 8, 8, dtype=torch.float64) - 1
    part = torch.tensor([[9, 11, 15, 17]]).repeat(6, 1)           # 6x6 inside the shared patch
    same = correspondence(model, images, part, layers=["conv2", "pool2", "fc3"])
    g = torch.Generator().manual_seed(1)
    randoms = [correspondence(model, images, random_boxes(6, 6, 24, generator=g), layers=["conv2", "pool2", "fc3"])
               for _ in range(5)]
    for layer in same:
        assert 0 <= same[layer] < min(r[layer] for r in randoms), layer


def test_features_the_mask_cannot_reach_do_not_change():
    model = small_net()
    images = torch.rand(3, 3, 24, 24, dtype=torch.float64)
    boxes = torch.tensor([[0, 0, 4, 4]] * 3)
    eps = feature_differences(model, images, boxes, ["conv1", "fc4"], fill=0.5)
    conv1 = eps["conv1"].view(3, 8, 24, 24)
    # beyond the 3x3 reach: no change, whatever order the CPU's kernels sum in
    assert (conv1[:, :, 5:, :] == 0).all() and (conv1[:, :, :, 5:] == 0).all()
    assert (conv1[:, :, :4, :4] != 0).any() and (eps["fc4"] != 0).all()
    # filling the box with what is already there changes nothing at all
    same = images.clone()
    same[:, :, :4, :4] = 0.5
    assert all((e == 0).all() for e in feature_differences(model, same, boxes, ["conv1", "fc4"], fill=0.5).values())
    # masks and boxes are the same thing
    by_mask = feature_differences(model, images, box_masks(boxes, 24), "fc4", fill=0.5)["fc4"]
    assert torch.equal(by_mask, eps["fc4"])


class Reordering(nn.Linear):
    """A dense layer whose rows of a batch differ in the last bits, as when a CPU kernel
    sums some rows of a matrix product in another order than others (oneDNN on AMD)."""

    def forward(self, x):
        out = super().forward(x)
        rows = torch.arange(len(out), dtype=out.dtype)[:, None]
        return out + rows * 4 * torch.finfo(out.dtype).eps * out.abs().amax()


def test_differences_within_rounding_count_as_no_change():
    model = small_net()
    model[7] = Reordering(8 * 6 * 6, 32).double()
    images = torch.rand(3, 3, 24, 24, dtype=torch.float64)
    images[:, :, :4, :4] = 0.5
    boxes = torch.tensor([[0, 0, 4, 4]] * 3)
    with torch.no_grad():
        raw = model[:8](torch.cat([images, images]))
    assert (raw[:3] != raw[3:]).any(), "the stand-in does reorder"
    eps = feature_differences(model, images, boxes, ["fc3", "fc4"], fill=0.5)
    assert all((e == 0).all() for e in eps.values())
    # a real change, however small against the layer's scale, is kept
    images[:, :, 20:, 20:] = 0.5
    images[0, :, 20:, 20:] += 1e-6
    moved = feature_differences(model, images, torch.tensor([[20, 20, 24, 24]] * 3), "fc4", fill=0.5)["fc4"]
    assert (moved[0] != 0).all() and (moved[1:] == 0).all()


def test_box_masks_and_parts_of_an_object():
    assert box_masks(torch.tensor([[1, 2, 3, 5]]), (4, 6)).int().tolist() == [[
        [0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]]]
    masks = torch.zeros(2, 32, 32)
    masks[0, 10:21, 4:29] = 255                     # a bar: centroid (15, 16), far corners
    masks[1, 20:31, 20:31] = 1.0                    # a square in the corner: the box must stay inside
    centre = part_boxes(masks, "centre", 6)
    assert centre[0].tolist() == [12, 13, 18, 19]
    assert centre[1].tolist() == [22, 22, 28, 28]
    tip = part_boxes(masks, "tip", 6)
    top, left, bottom, right = tip[0].tolist()
    assert bottom - top == 6 and right - left == 6
    inside = masks[0, top:bottom, left:right] > 0
    assert inside.float().mean() > 0.5 and (left < 8 or right > 24)   # at an end of the bar, mostly on it
    with pytest.raises(ValueError, match="unknown part"):
        part_boxes(masks, "nose", 6)
    with pytest.raises(ValueError, match="cover some"):
        part_boxes(torch.zeros(1, 8, 8), "centre", 3)


def test_the_top_part_is_the_highest_point_moved_onto_the_object():
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    diamond = ((yy - 16).abs() + (xx - 16).abs() <= 10).float()     # a square on its corner
    bar = torch.zeros(32, 32)
    bar[10:21, 4:29] = 1                                            # a flat top: its middle
    boxes = part_boxes(torch.stack([diamond, bar]), "top", 6)
    assert boxes[0].tolist() == [6, 13, 12, 19]       # the corner at (6, 16), centre 3 px lower
    assert boxes[1].tolist() == [10, 13, 16, 19]      # the top row's middle (10, 16), then inside


def test_the_top_of_a_synthetic_object_is_the_same_part_whatever_its_angle():
    from zfcourse.data import synthetic
    images, masks, labels = synthetic.render(range(40), "val")
    squares = [i for i in range(40) if synthetic.TRAIN_PAIRS[int(labels[i])][0] == "square"]
    m = masks[squares].float()
    top = part_boxes(m, "top", 8)
    centre = part_boxes(m, "centre", 1)
    covered = (box_masks(top, 64) & (m > 127)).sum((1, 2)) / 64
    assert len(squares) >= 4 and (covered > 0.6).all()   # on the object, at a corner
    assert (top[:, 0] + 4 < centre[:, 0]).all()          # and above its centre in every image


def test_random_boxes_lie_on_the_region_when_they_fit():
    g = torch.Generator().manual_seed(0)
    region = torch.zeros(50, 32, 32, dtype=torch.bool)
    region[:, 5:20, 8:30] = True
    region[7] = False
    region[7, 3:6, 3:6] = True                       # too small for a box: centred on it instead
    boxes = random_boxes(8, 50, 32, region=region, generator=g)
    assert ((boxes[:, 2] - boxes[:, 0]) == 8).all() and ((boxes[:, 3] - boxes[:, 1]) == 8).all()
    covered = (box_masks(boxes, 32) & region).sum((1, 2))
    assert (covered[torch.arange(50) != 7] == 64).all()
    assert covered[7] == 9
    assert len({tuple(b) for b in boxes.tolist()}) > 10        # not all at one place
    anywhere = random_boxes(8, 200, (20, 32), generator=g)
    assert (anywhere[:, :2] >= 0).all() and (anywhere[:, 2] <= 20).all() and (anywhere[:, 3] <= 32).all()
    assert anywhere[:, 0].unique().numel() == 13 and anywhere[:, 1].unique().numel() == 25
    with pytest.raises(ValueError, match="size must be"):
        random_boxes(33, 2, 32)


def test_bad_parts_raise():
    model = small_net()
    images = torch.rand(2, 3, 24, 24, dtype=torch.float64)
    with pytest.raises(ValueError, match="boxes"):
        feature_differences(model, images, torch.zeros(2, 3), "fc4")
    with pytest.raises(ValueError, match="one part per image"):
        feature_differences(model, images, torch.tensor([[0, 0, 4, 4]]), "fc4")


def test_random_parts_are_random_boxes_on_the_object():
    region = torch.zeros(4, 32, 32)
    region[:, 4:20, 6:28] = 1.0
    a = part_boxes(region, "random", 6, generator=torch.Generator().manual_seed(3))
    b = random_boxes(6, 4, (32, 32), region=region, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert (box_masks(a, 32) & (region > 0)).sum((1, 2)).tolist() == [36] * 4


def test_compare_parts_scores_every_set_and_part_as_one_call_would():
    from zfcourse.correspondence import PartComparison, compare_parts

    model = small_net()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(7, 3, 24, 24, dtype=torch.float64, generator=g) - 0.5
    region = torch.zeros(7, 24, 24, dtype=torch.bool)
    region[:, 4:20, 3:15] = True
    region[6, :, :] = False
    region[6, 10:14, 10:14] = True                   # smaller than a box: half of it is off the object
    sets = [torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5, 6])]
    layers = ["pool2", "fc3"]
    result = compare_parts(model, images, region, sets, 6, layers=layers,
                           generator=torch.Generator().manual_seed(1))
    assert isinstance(result, PartComparison)
    assert result.parts == ["centre", "top", "tip", "random"] and result.layers == layers
    replay = torch.Generator().manual_seed(1)         # the same draws, in the same order
    for k, s in enumerate(sets):
        for part in result.parts:
            boxes = part_boxes(region[s], part, 6, generator=replay)
            expected = correspondence(model, images[s], boxes, layers)
            for layer in layers:
                assert result.delta[part][layer][k] == pytest.approx(expected[layer], rel=1e-6)
    assert result.on_object["random"][0] == 1 and result.on_object["centre"][0] == 1
    assert result.on_object["centre"][1] == pytest.approx((3 + 16 / 36) / 4)
    again = compare_parts(model, images, region, sets, 6, layers=layers,
                          generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(again.delta[p][layer], result.delta[p][layer])
               for p in result.parts for layer in layers)


def test_verdicts_follow_the_paired_difference_in_standard_errors():
    from zfcourse.correspondence import PartComparison

    delta = {"centre": {"pool5": torch.tensor([0.1, 0.2, 0.3])},
             "tip": {"pool5": torch.tensor([0.5, 0.2, 0.35])},
             "random": {"pool5": torch.tensor([0.3, 0.3, 0.4])}}
    result = PartComparison(delta=delta, on_object={p: torch.ones(3) for p in delta}, size=4)
    # centre: differences 0.2, 0.1, 0.1: mean 0.1333, std 0.0577, standard error 0.0333
    assert result.z("centre", "pool5") == pytest.approx(4.0, rel=1e-4)
    assert result.verdict("centre", "pool5") == "more consistent than"
    assert result.verdict("centre", "pool5", threshold=5) == "about as consistent as"
    assert result.verdict("random", "pool5", baseline="centre") == "less consistent than"
    assert -2 < result.z("tip", "pool5") < 0                       # -0.2, 0.1, 0.05
    assert result.verdict("tip", "pool5") == "about as consistent as"
