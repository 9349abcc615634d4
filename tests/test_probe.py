"""The linear classifiers of Table 7: each is the optimum of its objective; the
regularisation chosen by validation on the training images alone."""
import pytest
import torch
import torch.nn.functional as F

from zfcourse import transfer
from zfcourse.probe import L2, L2_GRID, choose_l2, fit_probe, mean_class_accuracy


def data(n=60, d=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, d, generator=g) + 2 * F.one_hot(y, d).float()
    return x, y


def test_the_svm_is_the_optimum_of_the_squared_hinge_objective():
    x, y = data()
    probe = fit_probe(x, y, l2=0.1, loss="hinge", device="cpu")
    w, b = probe.weight.clone().requires_grad_(True), probe.bias.clone().requires_grad_(True)
    xn = (x - probe.mean) / probe.scale
    t = -torch.ones(len(y), 3)
    t[torch.arange(len(y)), y] = 1
    objective = F.relu(1 - t * (xn @ w.T + b)).pow(2).sum(1).mean() + 0.05 * w.pow(2).sum()
    gw, gb = torch.autograd.grad(objective, (w, b))
    assert gw.abs().max() < 1e-4 and gb.abs().max() < 1e-4
    assert repr(probe) == "LinearProbe(hinge, classes=3, features=5)"
    assert mean_class_accuracy(probe.predict(x), y) > 0.8


def test_the_two_losses_differ_and_unknown_ones_are_named():
    x, y = data()
    soft = fit_probe(x, y, device="cpu")
    hinge = fit_probe(x, y, device="cpu", loss="hinge")
    assert not torch.allclose(soft.weight, hinge.weight)
    with pytest.raises(ValueError, match="unknown loss 'svm'; valid: softmax, hinge"):
        fit_probe(x, y, loss="svm")
    with pytest.raises(ValueError, match="l2 must be more than 0"):
        fit_probe(x, y, l2=0)


def test_choose_l2_cross_validates_on_the_training_images():
    x, y = data()
    chosen = choose_l2(x, y, device="cpu")
    assert chosen in L2_GRID
    # by hand: the same folds, the same scores
    fold = torch.arange(len(y)) // 3 % 3        # classes cycle 0,1,2: the k-th image of each
    scores = {}
    for l2 in L2_GRID:
        scores[l2] = sum(mean_class_accuracy(fit_probe(x[fold != k], y[fold != k], 3, l2, device="cpu")
                                             .predict(x[fold == k]), y[fold == k]) for k in range(3)) / 3
    best = max(scores.values())
    assert chosen == max(l2 for l2, s in scores.items() if s >= best - 1e-12)


def test_one_image_per_class_leaves_nothing_to_validate_on():
    x, y = data(n=3)
    assert choose_l2(x, y, device="cpu") == L2


def test_split_table_scores_each_split_once_and_spreads_over_them():
    x, y = data(n=90)
    splits = [transfer.split_per_class(y, 5, seed=k) for k in range(5)]
    table = transfer.split_table({"a": x, "b": x[:, :2]}, y, splits, 10, loss="hinge")
    assert list(table) == ["a", "b"] and table["a"].accuracy.shape == (1, 5)
    train, test = splits[2]
    [idx] = transfer.draw_shots(y, train, 10, 1, seed=2)
    c = choose_l2(x[idx], y[idx], 3, loss="hinge", device=None)
    expected = mean_class_accuracy(fit_probe(x[idx], y[idx], 3, c, loss="hinge").predict(x[test]), y[test])
    assert float(table["a"].accuracy[0, 2]) == pytest.approx(expected)
