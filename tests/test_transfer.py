import functools
import types

import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from zfcourse import models, transfer, worlds
from zfcourse.data import caltech
from zfcourse.data.synthetic import SyntheticImages


def blobs(n_per_class=30, classes=4, dim=20, spread=0.3, seed=0):
    """Gaussian clusters around well-separated centres: linearly separable with a wide margin."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, dim, generator=g)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[y] + spread * torch.randn(len(y), dim, generator=g), y


def test_probe_reaches_full_accuracy_on_separable_features():
    x, y = blobs(n_per_class=110, seed=1)
    train, test = transfer.split_per_class(y, 100, seed=0)           # 10 training images per class
    probe = transfer.fit_probe(x[train], y[train], device="cpu")
    assert transfer.mean_class_accuracy(probe.predict(x[test]), y[test]) > 0.99
    assert probe.weight.shape == (4, 20)


def test_probe_does_not_depend_on_the_feature_scale():
    x, y = blobs(seed=2)
    a = transfer.fit_probe(x, y, device="cpu")(x)
    b = transfer.fit_probe(1000 * x + 5, y, device="cpu")(1000 * x + 5)
    assert torch.allclose(a, b, atol=1e-2)  # the optimum is the same; L-BFGS stops within its tolerance


def test_probe_rejects_bad_input():
    with pytest.raises(ValueError, match="l2"):
        transfer.fit_probe(torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]), l2=0)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        transfer.fit_probe(torch.zeros(4, 3), torch.tensor([0, 1, 0]))


def test_mean_class_accuracy_weighs_classes_equally():
    target = torch.tensor([0] * 8 + [1] * 2)
    pred = torch.zeros(10, dtype=torch.long)                          # right on the big class only
    assert transfer.mean_class_accuracy(pred, target) == pytest.approx(0.5)


def test_split_is_disjoint_capped_and_keeps_min_train():
    labels = torch.tensor([0] * 31 + [1] * 45 + [2] * 90)
    train, test = transfer.split_per_class(labels, test_per_class=50, min_train=30, seed=3)
    assert not set(train.tolist()) & set(test.tolist())
    assert len(train) + len(test) == len(labels)
    assert labels[test].bincount().tolist() == [1, 15, 50]
    assert labels[train].bincount().tolist() == [30, 30, 40]
    with pytest.raises(ValueError, match="class 0 has 31 images"):
        transfer.split_per_class(labels, test_per_class=5, min_train=31)


def test_few_shot_draws_come_from_the_pool_only():
    labels = torch.arange(5).repeat(60)
    train, test = transfer.split_per_class(labels, 20, seed=0)
    test_set = set(test.tolist())
    for shots in (1, 5, 40):
        draws = transfer.draw_shots(labels, train, shots, draws=4, seed=7)
        for idx in draws:
            assert not set(idx.tolist()) & test_set
            assert set(idx.tolist()) <= set(train.tolist())
            assert labels[idx].bincount().tolist() == [shots] * 5
            assert len(idx.unique()) == len(idx)
        assert len({tuple(i.tolist()) for i in draws}) == 4, "draws differ"
    with pytest.raises(ValueError, match="fewer"):
        transfer.draw_shots(labels, train, 41)


def test_curves_are_deterministic_under_a_seed():
    x, y = blobs(n_per_class=40, spread=3.0, seed=4)                   # overlapping: draws matter
    train, test = transfer.split_per_class(y, 20, seed=0)
    run = lambda seed: transfer.probe_curve(x, y, train, test, shots=(1, 3), draws=3, seed=seed,
                                            device="cpu", progress=False)
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.accuracy, b.accuracy)
    assert not torch.equal(a.accuracy, c.accuracy)
    assert a.accuracy.shape == (2, 3) and a.mean.shape == (2,) and (a.std >= 0).all()


def test_layer_table_probes_every_layer():
    x, y = blobs(n_per_class=20, seed=5)
    train, test = transfer.split_per_class(y, 10)
    table = transfer.layer_table({"a": x, "b": x[:, :2]}, y, train, test, shots=5, draws=2, device="cpu",
                                 progress=False)
    assert list(table) == ["a", "b"] and table["a"].mean[0] > 0.99


def test_scratch_curve_trains_the_same_architecture_deterministically():
    data = SyntheticImages("heldout", 40, seed=0)
    train, test = transfer.split_per_class(data.labels, 2)
    made = []

    def make_model():
        made.append(models.mini_alexnet(10))                       # ten outputs: the head is resized to 5
        return made[-1]

    run = lambda: transfer.scratch_curve(make_model, data, data.labels, train, test, shots=(1, 2), draws=1,
                                         steps=2, device="cpu", progress=False)
    a, b = run(), run()
    assert torch.equal(a.accuracy, b.accuracy) and a.accuracy.shape == (2, 1)
    assert made[0].classifier[-1].out_features == 5


def test_stage_layers_follow_the_paper():
    nn = torch.nn
    block = lambda: [nn.Conv2d(3, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.LocalResponseNorm(3)]
    zf_like = nn.Sequential(*block(), *block(), *[nn.Conv2d(3, 3, 3), nn.ReLU()] * 3, nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    assert transfer.stage_layers(zf_like) == {1: "norm1", 2: "norm2", 3: "conv3", 4: "conv4",
                                              5: "pool5", 6: "fc6", 7: "fc7"}
    assert transfer.stage_layers(models.mini_alexnet(3))[1] == "pool1"


def test_features_pool_conv_maps_and_flatten():
    torch.manual_seed(0)
    model = models.mini_alexnet(3).eval()
    x = torch.randn(5, 3, 64, 64)
    out = transfer.features(model, x, ["conv1", "pool5", "fc7"], grid=4, cache=False, progress=False)
    assert out["conv1"].shape == (5, 48 * 4 * 4)      # 16x16 maps averaged to 4x4
    assert out["pool5"].shape == (5, 96 * 2 * 2)      # already smaller than the grid
    assert out["fc7"].shape == (5, 256)
    full = transfer.features(model, x, "conv1", grid=None, cache=False, progress=False)["conv1"]
    assert full.shape == (5, 48 * 16 * 16)
    assert torch.allclose(out["conv1"].view(5, 48, 16), full.view(5, 48, 4, 4, 4, 4).mean((3, 5)).flatten(2), atol=1e-5)
    with pytest.raises(KeyError, match="conv1"):
        transfer.features(model, x, "conv9", cache=False)


def test_feature_cache_is_reused_keyed_by_weights_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model = models.mini_alexnet(3).eval()
    x = torch.randn(6, 3, 64, 64)
    first = transfer.features(model, x, ["conv3", "fc6"], progress=False)
    files = sorted((tmp_path / "features").glob("*.pt"))
    assert len(files) == 2

    real = transfer._extract
    monkeypatch.setattr(transfer, "_extract", lambda *a, **k: pytest.fail("the cache was not used"))
    again = transfer.features(model, x, ["conv3", "fc6"], progress=False)
    assert all(torch.equal(first[k], again[k]) for k in first)

    monkeypatch.setattr(transfer, "_extract", real)
    files[0].write_bytes(b"not a tensor file")
    with pytest.warns(UserWarning, match="unreadable"):
        rebuilt = transfer.features(model, x, ["conv3", "fc6"], progress=False)
    assert all(torch.allclose(first[k], rebuilt[k]) for k in first)

    with torch.no_grad():
        models.conv_of(model, "conv1").weight.mul_(2)
    transfer.features(model, x, "conv3", progress=False)
    assert len(list((tmp_path / "features").glob("*.pt"))) == 3, "new weights, new cache entry"


def make_caltech(root, sizes):
    """A stand-in laid out like torchvision's Caltech-101 folder, greyscale images included."""
    top = root / "caltech101" / "101_ObjectCategories"
    for name, n in {"BACKGROUND_Google": 3, **sizes}.items():
        (top / name).mkdir(parents=True)
        for i in range(1, n + 1):
            mode = "L" if i % 4 == 0 else "RGB"
            Image.new(mode, (12, 10), color=40 if mode == "L" else (i, 50, 90)).save(top / name / f"image_{i:04d}.jpg")


def test_caltech101_standin_loads_as_rgb_and_splits_as_the_paper(tmp_path, monkeypatch):
    make_caltech(tmp_path, {"ant": 31, "bonsai": 45, "chair": 90})
    monkeypatch.setenv("ZFCOURSE_DATA", str(tmp_path))
    task = worlds.caltech_task(pil_to_tensor)
    assert task.classes == ["ant", "bonsai", "chair"], "BACKGROUND_Google is not a class"
    assert len(task.data) == 166
    assert {task.data[i][0].shape[0] for i in range(4)} == {3}, "greyscale images come out as RGB"
    assert task.labels[task.test].bincount().tolist() == [1, 15, 50]
    assert task.labels[task.train].bincount().tolist() == [30, 30, 40]
    assert not set(task.train.tolist()) & set(task.test.tolist())
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.ReLU())
    feats = transfer.features(net, _Floats(task.data), ["conv1", "conv2"], cache=False, batch_size=50,
                              num_workers=0, progress=False)
    assert feats["conv1"].shape == (166, 2 * 4 * 4)       # pooled to 4 x 4 cells
    assert feats["conv2"].shape == (166, 2 * 6 * 8)       # the last conv layer: its whole map


def test_missing_caltech101_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="ZFCOURSE_DATA"):
        caltech.caltech101(tmp_path, download=False)


def test_scratch_curve_trains_on_image_files(tmp_path):
    make_caltech(tmp_path, {"ant": 6, "bonsai": 6})
    to_input = lambda img: pil_to_tensor(img.resize((64, 64))).float() / 255
    data = caltech.caltech101(tmp_path, transform=to_input, download=False)
    train, test = transfer.split_per_class(data.labels, 2)
    curve = transfer.scratch_curve(lambda: models.mini_alexnet(10), data, data.labels, train, test, shots=2, draws=1,
                                   steps=1, device="cpu", progress=False)
    assert curve.accuracy.shape == (1, 1) and 0 <= float(curve.accuracy) <= 1


class _Floats(torch.utils.data.Dataset):
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        x, y = self.data[i]
        return x.float() / 255, y


def test_new_task_splits_the_heldout_classes():
    data = SyntheticImages("heldout", 150)
    task = transfer.new_task(types.SimpleNamespace(task=functools.partial(worlds.heldout_task, data)))
    assert task.labels[task.test].bincount().tolist() == [10] * 5
    assert task.labels[task.train].bincount().tolist() == [20] * 5
    assert "5 classes" in repr(task)


def test_gap_is_in_points_at_the_shots_both_curves_have():
    a = transfer.Curve([1, 5, 20], torch.tensor([[0.5, 0.7], [0.8, 0.8], [0.9, 0.95]]), "a")
    b = transfer.Curve([5, 20], torch.tensor([[0.3], [0.425]]), "b")
    gap = transfer.gap(a, b)
    assert list(gap) == [5, 20]
    assert gap[5] == pytest.approx(50.0) and gap[20] == pytest.approx(50.0)
    assert transfer.gap(b, a)[20] == pytest.approx(-50.0)


def test_top_classes_is_the_most_common_class_and_its_share():
    data = types.SimpleNamespace(labels=torch.tensor([0, 1, 1, 2, 2, 2]))
    topk = types.SimpleNamespace(indices=torch.tensor([[3, 4, 1], [1, 2, 0], [0, 1, 3]]))
    mode, share = transfer.top_classes(topk, data)
    assert mode.tolist() == [2, 1, 0]                                  # a three-way tie: the lowest
    torch.testing.assert_close(share, torch.tensor([2 / 3, 2 / 3, 1 / 3]))


def test_consistent_units_take_each_class_once_most_consistent_first():
    classes = torch.tensor([0, 1, 0, 2, 1, 3])
    share = torch.tensor([0.5, 1.0, 1.0, 0.5, 1.0, 0.2])
    old = torch.tensor([0.0, 0.2, 0.1, 0.9, 0.6, 0.0])
    # share 1.0: units 1, 2, 4 (old share breaks the tie: 4, 1, 2); unit 1 repeats class 1
    assert transfer.consistent_units(classes, share, old, k=4) == [4, 2, 3, 5]
    assert transfer.consistent_units(classes, share, old, k=2) == [4, 2]
    assert transfer.consistent_units(classes, share, k=3) == [1, 2, 3]   # ties: lower channel
    assert transfer.consistent_units(classes, share, -old, k=2) == [2, 1]


def test_carried_over_needs_the_same_ingredient_in_new_and_old_classes():
    new_pairs = [("disc", "dots"), ("cross", "dots"), ("disc", "checks")]
    old_pairs = [("square", "dots"), ("disc", "stripes"), ("cross", "checks")]
    new = torch.tensor([[0, 1, 1, 0],      # dots in all four (discs and crosses)
                        [0, 2, 0, 2],      # discs in all four
                        [0, 0, 0, 1]])     # discs in three, dots in all four
    old = torch.tensor([[0, 0, 0, 0],      # dotted squares: dots carried over
                        [1, 1, 1, 2],      # discs in three old ones only
                        [1, 1, 1, 1]])     # striped discs: the disc, not dots
    kept = transfer.carried_over(new, new_pairs, old, old_pairs, min_count=4)
    assert kept == {"shape": {}, "texture": {0: "dots"}}
    kept = transfer.carried_over(new, new_pairs, old, old_pairs, min_count=3)
    assert kept == {"shape": {1: "disc", 2: "disc"}, "texture": {0: "dots"}}
    with pytest.raises(ValueError, match="one row per channel"):
        transfer.carried_over(new, new_pairs, old[:2], old_pairs)


def test_the_probe_is_the_optimum_of_its_objective():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 5, generator=g), torch.randint(0, 3, (60,), generator=g)
    probe = transfer.fit_probe(x, y, l2=0.1, device="cpu")
    w, b = probe.weight.clone().requires_grad_(True), probe.bias.clone().requires_grad_(True)
    xn = (x - probe.mean) / probe.scale
    loss = torch.nn.functional.cross_entropy(xn @ w.T + b, y) + 0.5 * 0.1 * w.pow(2).sum()
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert gw.abs().max() < 1e-4 and gb.abs().max() < 1e-4          # the gradient vanishes
    strong = transfer.fit_probe(x, y, l2=10.0, device="cpu")
    assert strong.weight.norm() < 0.5 * w.norm()                    # more L2, smaller weights


def test_scratch_accuracy_is_that_of_the_trained_networks_predictions():
    data = SyntheticImages("heldout", 40, seed=0)
    train, test = transfer.split_per_class(data.labels, 2)
    made = []

    def make_model():
        made.append(models.mini_alexnet(10))
        return made[-1]

    curve = transfer.scratch_curve(make_model, data, data.labels, train, test, shots=4, draws=1,
                                   steps=20, device="cpu", progress=False)
    model = made[-1].eval()
    x = torch.stack([data[i][0] for i in test.tolist()])
    with torch.no_grad():
        predicted = model(x).argmax(1)
    truth = data.labels[test]
    per_class = [float((predicted[truth == c] == c).float().mean()) for c in truth.unique()]
    assert float(curve.accuracy[0, 0]) == pytest.approx(sum(per_class) / len(per_class), abs=1e-6)
