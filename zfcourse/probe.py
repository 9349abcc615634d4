"""Linear classifiers on frozen features: the softmax and the linear SVM of Table 7
(Zeiler & Fergus 2014, Sec. 5.2), and their regularisation chosen by validation.

Features are centred by the training mean and divided by one scalar, their mean norm, so
that every layer, whatever its width, reaches the classifier at the same scale. Then

    softmax:  min_{W, b} (1/N) sum_i -log softmax(W x_i + b)[y_i]          + (l2 / 2) ||W||^2
    hinge:    min_{W, b} (1/N) sum_i sum_c max(0, 1 - t_ic (W x_i + b)_c)^2 + (l2 / 2) ||W||^2

(``t_ic = +1`` for the image's class, ``-1`` for the others: one-against-the-rest linear
SVMs with the squared hinge, the L2-SVM, which is differentiable) are strictly convex,
and full-batch L-BFGS from zero finds the one optimum: no learning rate, no epochs, no
randomness, the same result on every run.

**Regularisation.** The paper does not give its SVM's constant. :func:`choose_l2` picks
``l2`` from a grid by cross-validation on the training images alone (stratified folds;
the largest ``l2`` among the best, the simplest classifier that does as well); with one
image per class there is nothing to hold out and it returns the default :data:`L2`.

**Accuracy** (:func:`mean_class_accuracy`) is the mean of the per-class accuracies, the
paper's measure for Caltech, whose test classes differ in size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .infra.checks import count, number
from .infra.device import default_device

__all__ = ["L2", "L2_GRID", "LOSSES", "LinearProbe", "fit_probe", "choose_l2", "mean_class_accuracy"]

L2 = 1e-3
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)
LOSSES = ("softmax", "hinge")


@dataclass
class LinearProbe:
    """A linear classifier on frozen features: ``scores = W (x - mean) / scale + b``."""
    weight: torch.Tensor  # [C, D]
    bias: torch.Tensor    # [C]
    mean: torch.Tensor    # [D]
    scale: float
    loss: str = "softmax"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.weight.device, torch.float32)
        return ((x - self.mean) / self.scale) @ self.weight.T + self.bias

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).argmax(1).cpu()

    def __repr__(self) -> str:
        return (f"LinearProbe({self.loss}, classes={self.weight.shape[0]}, "
                f"features={self.weight.shape[1]})")


def _objective(scores: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "softmax":
        return F.cross_entropy(scores, y)
    t = -torch.ones_like(scores)
    t[torch.arange(len(y)), y] = 1
    return F.relu(1 - t * scores).pow(2).sum(1).mean()


def fit_probe(x: torch.Tensor, y, num_classes: int | None = None, l2: float = L2, max_iter: int = 200,
              device=None, loss: str = "softmax") -> LinearProbe:
    """The ``loss`` classifier (``"softmax"`` or ``"hinge"``, module doc) with an L2 penalty,
    by full-batch L-BFGS; on ``device`` (default: CUDA when present, else the CPU)."""
    l2 = number(l2, "l2", 0, above=True)   # strictly convex only with a penalty
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
    max_iter = count(max_iter, "max_iter")
    device = torch.device(device) if device is not None else default_device()
    x = x.to(device, torch.float32)
    y = torch.as_tensor(y, dtype=torch.long).to(device)
    if x.dim() != 2 or len(x) != len(y):
        raise ValueError(f"expected features [N, D] and N labels, got {tuple(x.shape)} and {tuple(y.shape)}")
    num_classes = num_classes or int(y.max()) + 1
    mean = x.mean(0)
    x = x - mean
    scale = float(x.norm(dim=1).mean()) or 1.0
    x = x / scale
    w = torch.zeros(num_classes, x.shape[1], device=device, requires_grad=True)
    b = torch.zeros(num_classes, device=device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-10)

    def closure():
        opt.zero_grad()
        value = _objective(x @ w.T + b, y, loss) + 0.5 * l2 * w.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(closure)
    return LinearProbe(w.detach(), b.detach(), mean, scale, loss)


def choose_l2(x: torch.Tensor, y, num_classes: int | None = None, grid=L2_GRID, folds: int = 3,
              loss: str = "softmax", device=None) -> float:
    """The ``l2`` of ``grid`` with the best mean-class accuracy in stratified ``folds``-fold
    cross-validation on ``(x, y)`` (fewer folds when a class has fewer images; :data:`L2`
    when some class has a single image). Ties go to the larger ``l2``."""
    y = torch.as_tensor(y, dtype=torch.long).cpu()
    grid = sorted(number(v, "grid", 0, above=True) for v in grid)
    if not grid:
        raise ValueError("grid must hold at least one l2 value")
    smallest = int(torch.bincount(y)[y.unique()].min())
    folds = min(count(folds, "folds", minimum=2), smallest)
    if folds < 2:
        return L2
    num_classes = num_classes or int(y.max()) + 1
    fold = torch.empty(len(y), dtype=torch.long)
    for c in y.unique():
        where = (y == c).nonzero().flatten()
        fold[where] = torch.arange(len(where)) % folds     # per class, in dataset order
    scores = []
    for l2 in grid:
        accuracy = [mean_class_accuracy(fit_probe(x[fold != k], y[fold != k], num_classes, l2, device=device,
                                                  loss=loss).predict(x[fold == k]), y[fold == k])
                    for k in range(folds)]
        scores.append(sum(accuracy) / folds)
    best = max(scores)
    return max(l2 for l2, s in zip(grid, scores) if s >= best - 1e-12)


def mean_class_accuracy(pred, target) -> float:
    """The mean over the classes present in ``target`` of each class's accuracy."""
    pred = torch.as_tensor(pred, dtype=torch.long).cpu()
    target = torch.as_tensor(target, dtype=torch.long).cpu()
    classes, counts = target.unique(return_counts=True)
    hits = torch.zeros(int(target.max()) + 1).index_add_(0, target, (pred == target).float())
    return float((hits[classes] / counts).mean())
