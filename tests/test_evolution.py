import pytest
import torch

from zfcourse import deconv, evolution, models, receptive


def _snapshots():
    torch.manual_seed(0)
    model = models.mini_alexnet(4).eval()
    first = {k: v.clone() for k, v in model.state_dict().items()}
    later = {k: v + 0.02 * torch.randn_like(v) for k, v in first.items()}
    return model, {1: first, 3: later}


def test_evolution_picks_the_strongest_image_and_projects_it():
    model, snaps = _snapshots()
    images = torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    units = [("conv1", 2), ("conv3", 5)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evo = evolution.evolution(model, snaps, images, units)
    assert evo.epochs == [1, 3] and [p.shape[-1] for p in evo.projections] == [
        receptive.receptive_field(model, "conv1")[0], receptive.receptive_field(model, "conv3")[0]]
    net = models.mini_alexnet(4).eval()
    for i, epoch in enumerate(evo.epochs):  # brute force: every image and position
        net.load_state_dict(snaps[epoch])
        for j, (layer, c) in enumerate(units):
            a = models.activations(net, images, layer)[layer][:, c]
            n = int(a.flatten(1).max(1).values.argmax())
            assert evo.images[i, j] == n
            h, w = divmod(int(a[n].argmax()), a.shape[-1])
            p = deconv.project(net, images[n:n + 1], layer, c, (h, w))
            assert torch.allclose(evo.projections[j][i], receptive.crop_patches(net, p, layer, [[h, w]])[0], atol=1e-6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_strongest_units_are_ranked_by_peak_activation():
    model, _ = _snapshots()
    images = torch.randn(4, 3, 64, 64)
    units = evolution.strongest_units(model, images, ["conv2"], per_layer=3)
    peak = models.activations(model, images, "conv2")["conv2"].amax(dim=(0, 2, 3))
    assert [c for _, c in units] == peak.argsort(descending=True)[:3].tolist()
    with pytest.raises(ValueError, match="valid: conv1, conv2, conv3, conv4, conv5"):
        evolution.strongest_units(model, images, ["fc9"])
