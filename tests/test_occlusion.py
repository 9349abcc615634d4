"""Occlusion maps: a known sensitive region, the windowed recomputation, batching, fills."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from zfcourse.models import activations, mini_alexnet
from zfcourse.occlusion import Occlusion, fill_value, mean_colour, occluded, occlusion_map

REGION = (4, 10, 9, 15)      # rows 4..8, cols 10..14 of a 16x16 image (bottom, right exclusive)


def region_model():
    """Class 0's score is the sum of the image over REGION; class 1's is constant."""
    conv = nn.Conv2d(3, 1, 1)
    head = nn.Linear(16 * 16, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
        w = torch.zeros(16, 16)
        t, l, b, r = REGION
        w[t:b, l:r] = 0.1
        head.weight.copy_(torch.stack([w.flatten(), torch.zeros(256)]))
        head.bias.copy_(torch.tensor([0.0, 3.0]))
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head).double().eval()


def he_init(model, seed=0):
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.normal_(m.bias, 0.0, 0.1)
    return model.double().eval()


def zf_like():
    """Padding, stride 2, overlapping ceil-mode pooling (16 -> 8: its last window hangs over the
    edge), contrast normalisation, padded pooling."""
    return he_init(nn.Sequential(
        nn.Conv2d(3, 4, 5, stride=2, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(3), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1), nn.Flatten(), nn.Linear(6 * 4 * 4, 5)), seed=1)


def test_the_map_peaks_where_the_output_depends_on_the_image():
    model = region_model()
    images = torch.rand(2, 3, 16, 16, dtype=torch.float64) + 0.5
    result = occlusion_map(model, images, target=0, window=4, stride=2, fill=0.0)
    assert result.probability.shape == (2, 7, 7) and list(result.rows) == list(range(0, 13, 2))
    t, l, b, r = REGION
    for n in range(2):
        drop = result.drop[n]
        # windows that miss the region leave the output exactly as it was
        for i, top in enumerate(result.rows.tolist()):
            for j, left in enumerate(result.cols.tolist()):
                overlap = max(0, min(b, top + 4) - max(t, top)) * max(0, min(r, left + 4) - max(l, left))
                if overlap == 0:
                    assert abs(drop[i, j]) < 1e-12
                else:
                    assert drop[i, j] > 1e-4
        # the largest drop is where the occluder covers most of the region
        i, j = divmod(int(drop.argmax()), 7)
        top, left = result.rows[i].item(), result.cols[j].item()
        assert t <= top and top + 4 <= b and l <= left and left + 4 <= r
    # covering most of the region flips the decision to the other class
    assert (result.predicted == 1).any()
    assert torch.equal(result.predicted == 1, result.probability < 0.5)


@pytest.mark.parametrize("model_fn,size,window,stride,layers", [
    (lambda: he_init(mini_alexnet(10)), 64, 16, 6, ["conv1", "pool1", "conv5"]),
    (lambda: he_init(mini_alexnet(10)), 64, (13, 9), (9, 11), ["conv2"]),
    (zf_like, 32, 7, 3, ["conv1", "norm1", "conv2"]),
])
def test_recomputing_windows_equals_the_plain_forward_pass(model_fn, size, window, stride, layers):
    model = model_fn()
    images = torch.randn(2, 3, size, size, dtype=torch.float64)
    for layer in layers:
        plain = occlusion_map(model, images, None, window, stride, layer=layer, local=False, batch_size=64)
        local = occlusion_map(model, images, None, window, stride, layer=layer, local=True, batch_size=37)
        torch.testing.assert_close(local.probability, plain.probability, rtol=0, atol=1e-12)
        torch.testing.assert_close(local.activation, plain.activation, rtol=1e-12, atol=1e-9)
        assert torch.equal(local.predicted, plain.predicted)
        assert torch.equal(local.channel, plain.channel)
    assert plain.drop.abs().max() > 1e-3                  # the occluder matters: the check has teeth


def test_a_copy_by_copy_loop_gives_the_same_maps():
    model = zf_like()
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    target = torch.tensor([3, 1])
    result = occlusion_map(model, images, target, window=8, stride=6, fill=0.3, layer="conv2", channel=[2, 5])
    fill = fill_value(0.3, 3, dtype=torch.float64)
    for n in range(2):
        for i, top in enumerate(result.rows.tolist()):
            for j, left in enumerate(result.cols.tolist()):
                x = occluded(images[n:n + 1], torch.tensor([top]), torch.tensor([left]), (8, 8), fill)
                assert (x[0, :, top:top + 8, left:left + 8] == 0.3).all()
                acts = activations(model, x, "conv2")
                out = model(x).softmax(1)[0]
                assert result.probability[n, i, j].item() == pytest.approx(out[target[n]].item(), abs=1e-12)
                assert result.predicted[n, i, j] == out.argmax()
                assert result.activation[n, i, j].item() == pytest.approx(
                    acts["conv2"][0, [2, 5][n]].sum().item(), rel=1e-12)


def test_batching_does_not_change_the_maps():
    model = he_init(mini_alexnet(10))
    images = torch.randn(4, 3, 64, 64, dtype=torch.float64)
    labels = torch.tensor([1, 4, 4, 0])
    whole = occlusion_map(model, images, labels, 24, 8, layer="conv5", batch_size=1000)
    for batch_size in (1, 7):
        parts = occlusion_map(model, images, labels, 24, 8, layer="conv5", batch_size=batch_size)
        torch.testing.assert_close(parts.probability, whole.probability, rtol=0, atol=1e-12)
        torch.testing.assert_close(parts.activation, whole.activation, rtol=1e-12, atol=1e-9)
    one = occlusion_map(model, images[3:4], labels[3], 24, 8, layer="conv5", channel=whole.channel[3])
    torch.testing.assert_close(one.probability[0], whole.probability[3], rtol=0, atol=1e-12)
    torch.testing.assert_close(one.activation[0], whole.activation[3], rtol=1e-12, atol=1e-9)


def test_defaults_target_the_prediction_and_the_strongest_channel():
    model = he_init(mini_alexnet(10))
    images = torch.randn(3, 3, 64, 64, dtype=torch.float64)
    result = occlusion_map(model, images, window=32, stride=32, layer="conv5")
    with torch.no_grad():
        probs = model(images).softmax(1)
    conv5 = activations(model, images, "conv5")["conv5"]
    assert torch.equal(result.target, probs.argmax(1))
    assert torch.equal(result.baseline_predicted, probs.argmax(1))
    torch.testing.assert_close(result.baseline_probability, probs.max(1).values)
    assert torch.equal(result.channel, conv5.flatten(2).amax(2).argmax(1))
    torch.testing.assert_close(result.baseline_activation, conv5[torch.arange(3), result.channel].sum((1, 2)))
    assert repr(result) == "Occlusion(images=3, grid=2x2, window=(32, 32), layer='conv5')"


def test_to_pixels_averages_over_the_covering_windows():
    r = Occlusion(probability=torch.zeros(1, 2, 3), predicted=torch.zeros(1, 2, 3, dtype=torch.long), activation=None,
                  rows=torch.tensor([0, 2]), cols=torch.tensor([0, 2, 4]), window=(3, 3), image_size=(6, 7),
                  target=torch.zeros(1, dtype=torch.long), baseline_probability=torch.ones(1),
                  baseline_predicted=torch.zeros(1, dtype=torch.long))
    grid = torch.arange(6.0).view(1, 2, 3)
    expected = torch.zeros(1, 6, 7)
    for h in range(6):
        for w in range(7):
            cover = [grid[0, i, j] for i, top in enumerate([0, 2]) for j, left in enumerate([0, 2, 4])
                     if top <= h < top + 3 and left <= w < left + 3]
            expected[0, h, w] = sum(cover) / len(cover) if cover else 0.0
    torch.testing.assert_close(r.to_pixels(grid), expected)
    assert r.centers[0].tolist() == [1.5, 3.5]
    # cells 2 px wide centred on the occluders' centres (x 1.5, 3.5, 5.5; y 1.5, 3.5), in imshow's
    # coordinates, where pixel (h, w) is centred at (w, h)
    assert r.extent == (0.0, 6.0, 4.0, 0.0)


def test_fill_values_and_the_worlds_mean_colour():
    assert fill_value(0.5, 3).flatten().tolist() == [0.5] * 3
    assert fill_value([1, 2, 3], 3).flatten().tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="one per channel"):
        fill_value([1, 2], 3)
    images = torch.full((4, 3, 8, 8), 51, dtype=torch.uint8)
    images[:, 1] = 102
    synthetic = SimpleNamespace(preprocess=lambda im: im, val=SimpleNamespace(images=images),
                                normalize=lambda x: (x - 0.5) / 0.25)
    torch.testing.assert_close(mean_colour(synthetic), torch.tensor([0.2, 0.4, 0.2]))
    torch.testing.assert_close(fill_value(synthetic, 3).flatten(), torch.tensor([-1.2, -0.4, -1.2]))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    imagenet = SimpleNamespace(preprocess=SimpleNamespace(mean=mean.tolist()), val=None,
                               normalize=lambda x: (x - mean.view(3, 1, 1)) / std.view(3, 1, 1))
    torch.testing.assert_close(fill_value(imagenet, 3).flatten(), torch.zeros(3), atol=1e-6, rtol=0)


def test_the_model_is_restored_and_bad_inputs_raise():
    model = he_init(mini_alexnet(10)).train()
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    a = occlusion_map(model, images, 0, 32, 16)
    assert model.training                                  # dropout was off for the maps, and is back on
    torch.testing.assert_close(a.probability, occlusion_map(model.eval(), images, 0, 32, 16).probability)
    with pytest.raises(ValueError, match="must fit"):
        occlusion_map(model, images, 0, 65, 4)
    with pytest.raises(ValueError, match="class index"):
        occlusion_map(model, images, 10, 32, 16)
    with pytest.raises(ValueError, match="one per image"):
        occlusion_map(model, images, [0, 1, 2], 32, 16)
    with pytest.raises(ValueError, match="channel must be in"):
        occlusion_map(model, images, 0, 32, 16, layer="conv5", channel=96)
    with pytest.raises(ValueError, match="window must be"):
        occlusion_map(model, images, 0, 0, 16)
    with pytest.raises(KeyError, match="unknown layer"):
        occlusion_map(model, images, 0, 32, 16, layer="conv9")
    with pytest.raises(ValueError, match="at least one image"):
        occlusion_map(model, images[:0], 0, 8, 4)


def test_overlap_is_the_share_of_each_square_on_the_object():
    model = region_model()
    images = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    result = occlusion_map(model, images, 0, window=4, stride=3)          # rows and cols 0, 3, 6, 9, 12
    masks = torch.zeros(1, 16, 16)
    masks[0, 2:8, 5:10] = 200.0
    share = result.overlap(masks)
    assert share.shape == result.probability.shape
    for i, top in enumerate(result.rows.tolist()):
        for j, left in enumerate(result.cols.tolist()):
            assert share[0, i, j] == (masks[0, top:top + 4, left:left + 4] > 0).float().mean()
    assert share[0, 1, 2] == 1 and share[0, 4, 4] == 0


def test_peak_overlap_and_the_drop_by_overlap():
    from zfcourse.occlusion import OVERLAP_BINS, drop_by_overlap, peak_overlap

    model = region_model()
    images = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5
    result = occlusion_map(model, images, target=0, window=4, stride=2, fill=0.0)
    masks = torch.zeros(2, 16, 16)
    t, l, b, r = REGION
    masks[:, t:b, l:r] = 255                    # the object is the region the output depends on
    on = result.overlap(masks)
    # the largest drop is with the occluder wholly on the region (see the first test)
    assert peak_overlap(result, masks).tolist() == [1.0, 1.0]
    masks[1] = 0
    masks[1, :8, :8] = 1                       # an object the output ignores
    peak = peak_overlap(result, masks)
    i, j = divmod(int(result.drop[1].argmax()), result.drop.shape[2])
    assert peak[1] == result.overlap(masks)[1, i, j] == 0

    masks[1] = masks[0]
    mean = drop_by_overlap(result, masks)
    assert mean.shape == (len(OVERLAP_BINS) - 1,)
    flat_on, flat_drop = on.flatten(), result.drop.flatten()
    assert mean[0].abs() < 1e-12               # squares off the object change nothing here
    for k, (lo, hi) in enumerate(zip(OVERLAP_BINS[:-1], OVERLAP_BINS[1:])):
        chosen = (flat_on >= lo) & (flat_on < hi)
        torch.testing.assert_close(mean[k], flat_drop[chosen].mean())
    assert (mean[1:] > 0).all() and mean[-1] == mean.max()   # more on the object, a larger drop
    assert drop_by_overlap(result, masks, bins=(0.0, 0.5, 1.01, 2.0))[-1].isnan()   # an empty bin


@pytest.mark.parametrize("options, error, message", [
    (dict(window=8.5), TypeError, "window must be a positive int"),
    (dict(stride=(4, 0)), ValueError, "stride must be a positive int"),
    (dict(target=1.5), TypeError, "target must be an int or one int per image"),
    (dict(batch_size=2.5), TypeError, "batch_size must be an int"),
    (dict(fill=float("nan")), ValueError, "all finite"),
    (dict(fill="grey"), TypeError, "fill must be a number"),
])
def test_floats_where_an_index_is_expected_and_bad_fills_are_refused(options, error, message):
    model = mini_alexnet(10).eval()
    args = {"target": 0, "window": 8, "stride": 4, **options}
    with pytest.raises(error, match=message):
        occlusion_map(model, torch.zeros(2, 3, 64, 64), **args)
