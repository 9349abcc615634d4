"""Feature generalisation: frozen features, a linear probe and few-shot curves (Sec. 5.2-5.3).

Zeiler & Fergus keep layers 1-7 of their ImageNet network fixed and train a new softmax
classifier on top, from the training images of a new data set: on Caltech-101 it reaches
83.8% with 15 and 86.5% with 30 images per class, where the same network trained from
scratch reaches 22.8% and 46.5% (Table 4). Table 7 puts a classifier on the features of
each layer in turn.

**Features.** :func:`features` is a layer's output for every image of a data set, one
row per image. A convolutional map ``[C, H, W]`` of layers 1-4 is first average-pooled to
at most ``grid x grid`` cells, so that the early layers' features stay a manageable size
(the paper does not say how it fed layers 1-4 to its SVM); the last conv layer's maps
(layer 5, as the paper's Table 7 takes it) and the dense layers are taken whole.
Results are cached on disk, keyed by the model's weights, the layer, ``grid`` and the
data, so a second run reads them back.

**The probe** is a linear classifier on the frozen features, the paper's softmax or its
linear SVM, with its regularisation fixed or chosen by validation (:mod:`zfcourse.probe`).
Accuracy is the mean of the per-class accuracies, the paper's measure for Caltech.

**Few shots.** :func:`split_per_class` fixes a test set and a disjoint training pool;
:func:`draw_shots` picks ``s`` images per class from the pool only. A draw depends on
``(seed, s, draw)`` alone, so the probe (:func:`probe_curve`) and the from-scratch
baseline (:func:`scratch_curve`, the same architecture trained with
:func:`zfcourse.train.train` on the same images for a fixed number of steps) are compared
on identical images.
"""
from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .data.caltech import ImageFiles, caltech101
from .infra.cache import cache_dir, cached
from .infra.cache import key as cache_key
from .infra.device import default_device, model_device, placed, seeded
from .infra.fingerprint import fingerprint
from .infra.progress import tqdm
from .models import activations, layer_index, layer_names
from .probe import L2, LinearProbe, choose_l2, fit_probe, mean_class_accuracy
from .train import train as train_model

__all__ = ["features", "stage_layers", "split_per_class", "draw_shots",
           "LinearProbe", "fit_probe", "mean_class_accuracy", "top_classes", "consistent_units",
           "carried_over", "Curve", "gap", "probe_curve", "scratch_curve", "layer_table", "split_table", "ImageFiles", "caltech101", "Task", "new_task"]

SHOTS = (1, 2, 5, 10, 20)


# --------------------------------------------------------------------------- features

def stage_layers(model: nn.Module) -> dict[int, str]:
    """The output of each of the paper's layers 1-7, as Table 7 numbers them.

    Layer ``k`` is the last named output of stage ``k``: for ZFNet ``norm1``, ``norm2``,
    ``conv3``, ``conv4``, ``pool5``, ``fc6``, ``fc7``; for AlexNet and the minis
    (no normalisation) ``pool1`` and ``pool2`` instead of the ``norm`` layers.
    """
    stages: dict[int, str] = {}
    for name in layer_names(model):
        k = int(re.search(r"\d+$", name).group())
        if k <= 7:
            stages[k] = name
    return stages


def features(model: nn.Module, data, layers: str | Sequence[str], *, grid: int | None = 4,
             batch_size: int = 128, cache: bool = True, key: str | None = None,
             num_workers: int | None = None, progress: bool = True) -> dict[str, torch.Tensor]:
    """The features of every image of ``data`` at ``layers``: ``{layer: [N, D]}``, float32 on the CPU.

    ``data`` is a Dataset of ``(image, label)`` items or a tensor of model inputs. Conv
    maps below the last conv layer are average-pooled to at most ``grid x grid`` cells
    (``None``: not at all); the last conv layer's (layer 5) are kept whole; all are then
    flattened. One pass through the network, in eval mode and no deeper than the deepest
    layer, serves all layers; it runs where the model is. Returns a tensor for one layer
    name, a dict for a list. With ``cache`` each layer is kept in
    ``<cache>/features/``, keyed by the architecture, the weights, the layer, ``grid`` and
    ``key`` (default: the data's :func:`zfcourse.infra.fingerprint.fingerprint`); a
    corrupt file is rebuilt with a warning.
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    for layer in layers:
        layer_index(model, layer)  # a KeyError naming the valid layers
    if grid is not None and grid < 1:
        raise ValueError(f"grid must be a positive number of cells or None, got {grid}")
    convs = [n for n in layer_names(model) if n.startswith("conv")]
    top = layer_index(model, convs[-1]) if convs else -1
    grids = {layer: None if layer_index(model, layer) >= top else grid for layer in layers}
    computed: dict[str, torch.Tensor] = {}

    def extract() -> dict[str, torch.Tensor]:
        if not computed:
            computed.update(_extract(model, data, grids, batch_size, num_workers, progress))
        return computed

    if not cache:
        out = extract()
    else:
        config = dict(arch=str(model), weights=fingerprint(model), data=key or fingerprint(data))
        n = len(data)

        def validate(obj):
            if obj["features"].dim() != 2 or obj["features"].shape[0] != n:
                raise ValueError(f"expected features for {n} images, found shape {tuple(obj['features'].shape)}")

        out = {layer: cached(cache_dir() / "features" /
                             f"{layer}-{cache_key(layer=layer, grid=grids[layer], **config)}.pt",
                             lambda layer=layer: {"features": extract()[layer]}, validate)["features"]
               for layer in layers}
    return {layer: out[layer] for layer in layers}


@torch.no_grad()
def _extract(model, data, grids, batch_size, num_workers, progress) -> dict[str, torch.Tensor]:
    """Each layer's maps pooled to ``grids[layer]`` cells at most (None: whole)."""
    device = model_device(model)
    layers = list(grids)
    chunks: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    with placed(model, device):
        for x in tqdm(_inputs(data, batch_size, num_workers), desc="features", disable=not progress,
                      total=math.ceil(len(data) / batch_size)):
            for layer, a in activations(model, x.to(device), layers).items():
                grid = grids[layer]
                if a.dim() == 4 and grid is not None and max(a.shape[2:]) > grid:
                    a = F.adaptive_avg_pool2d(a, (min(grid, a.shape[2]), min(grid, a.shape[3])))
                chunks[layer].append(a.flatten(1).float().cpu())
    return {layer: torch.cat(c) for layer, c in chunks.items()}


def _inputs(data, batch_size: int, num_workers: int | None):
    """Model-input batches in data-set order."""
    if torch.is_tensor(data):
        yield from data.split(batch_size)
    elif _tensor_backed(data):
        for i in range(0, len(data), batch_size):
            yield data.transform_batch(data.images[i:i + batch_size])
    else:
        workers = num_workers if num_workers is not None else min(4, os.cpu_count() or 1)
        for batch in DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers):
            yield batch[0] if isinstance(batch, (list, tuple)) else batch


def _tensor_backed(data) -> bool:
    return all(hasattr(data, a) for a in ("images", "labels", "transform_batch"))


class _TensorSubset(Dataset):
    """Chosen images of a tensor-backed data set, still tensor-backed (fast batches for training)."""

    def __init__(self, dataset, indices: torch.Tensor):
        self.dataset, self.indices = dataset, torch.as_tensor(indices, dtype=torch.long)
        self.images, self.labels = dataset.images[self.indices], dataset.labels[self.indices]
        self.transform_batch = dataset.transform_batch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[int(self.indices[i])]


class _InMemory(Dataset):
    """A data set's items decoded once into one tensor, so that training epochs do not
    read and decode the same files again."""

    def __init__(self, data: Dataset):
        images, labels = zip(*(data[i] for i in range(len(data))))
        self.images, self.labels = torch.stack(images), _labels(labels)

    @staticmethod
    def transform_batch(images: torch.Tensor) -> torch.Tensor:
        return images

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def _subset(data: Dataset, indices) -> Dataset:
    """The images ``indices`` of ``data``; tensor-backed data stays tensor-backed."""
    if _tensor_backed(data):
        return _TensorSubset(data, indices)
    return Subset(data, torch.as_tensor(indices).tolist())


# --------------------------------------------------------------------------- splits

def _labels(labels) -> torch.Tensor:
    return torch.as_tensor(labels, dtype=torch.long).cpu()


def split_per_class(labels, test_per_class: int, *, min_train: int = 1,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed split into a training pool and a test set, class by class.

    Each class is shuffled (seeded); up to ``test_per_class`` images go to the test set,
    always leaving ``min_train`` for training, and the rest to the pool. Caltech-101 as in the paper: ``test_per_class=50, min_train=30``.
    Returns sorted dataset indices ``(train, test)``; they never overlap.
    """
    labels = _labels(labels)
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = min(test_per_class, len(idx) - min_train)
        if n_test < 1:
            raise ValueError(f"class {c} has {len(idx)} images: too few for {min_train} training and one test image")
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def draw_shots(labels, pool, shots: int, draws: int = 1, seed: int = 0) -> list[torch.Tensor]:
    """``draws`` random training sets of ``shots`` images per class, from ``pool`` only.

    Draw ``d`` depends on ``(seed, shots, d)`` alone. Raises if a class of the pool has
    fewer than ``shots`` images.
    """
    if shots < 1 or draws < 1:
        raise ValueError(f"shots and draws must be at least 1, got shots={shots}, draws={draws}")
    labels, pool = _labels(labels), torch.as_tensor(pool, dtype=torch.long).cpu()
    by_class = [pool[labels[pool] == c] for c in labels[pool].unique().tolist()]
    small = [f"class {int(labels[i[0]])}: {len(i)}" for i in by_class if len(i) < shots]
    if small:
        raise ValueError(f"{shots} shots per class, but the training pool holds fewer for " + ", ".join(small))
    out = []
    for d in range(draws):
        g = torch.Generator().manual_seed(_seed(seed, shots, d))
        out.append(torch.cat([i[torch.randperm(len(i), generator=g)[:shots]] for i in by_class]))
    return out


def _seed(seed: int, shots: int, draw: int) -> int:
    return (seed * 1_000_003 + shots * 1_009 + draw) % (2 ** 63)


# --------------------------------------------------------------------------- what transfers

def top_classes(topk, data) -> tuple[torch.Tensor, torch.Tensor]:
    """For each channel of a :class:`zfcourse.topk.TopK` over ``data``, the most common class
    among its top-k images (the lowest on a tie) and the share of the k images it holds.

    Labels come from ``data.labels`` where the data set has them, else from its items.
    """
    if hasattr(data, "labels"):
        top = _labels(data.labels)[topk.indices]                          # [C, k]
    else:
        unique, inverse = topk.indices.unique(return_inverse=True)
        top = torch.tensor([int(data[i][1]) for i in unique.tolist()])[inverse]
    mode = top.mode(dim=1).values
    return mode, (top == mode[:, None]).float().mean(1)


def consistent_units(classes, share, *tiebreaks, k: int = 4) -> list[int]:
    """Up to ``k`` channels, each for a different class: the most consistent first.

    ``classes`` and ``share`` ``[C]`` are what :func:`top_classes` returns: each
    channel's most common class among its top images and the share it holds. Channels
    are ranked by ``share`` (highest first), ties broken by each of ``tiebreaks``
    (``[C]`` each, highest first) in turn, then by the lower channel; walking down that
    ranking, a channel is kept when its class is not yet taken.
    """
    keys = [torch.as_tensor(share)] + [torch.as_tensor(t) for t in tiebreaks]
    order = sorted(range(len(keys[0])), key=lambda c: tuple(-float(t[c]) for t in keys))
    units, taken = [], set()
    for c in order:
        if len(units) == k:
            break
        if int(classes[c]) not in taken:
            units.append(c)
            taken.add(int(classes[c]))
    return units


INGREDIENTS = ("shape", "texture")


def carried_over(new_labels, new_pairs, old_labels, old_pairs,
                 min_count: int = 8) -> dict[str, dict[int, str]]:
    """The ingredient (shape or texture) each unit carries from old classes to new ones.

    ``new_labels`` ``[C, k]``: the classes of each channel's top-k images of the new
    task; ``old_labels`` ``[C, k]``: of its top-k among the old (training) classes.
    ``new_pairs`` and ``old_pairs`` give each class's ``(shape, texture)``, as the
    synthetic world's ``HELDOUT_PAIRS`` and ``TRAIN_PAIRS`` do. A channel carries a
    shape (a texture) when the shape most of its new top-k share is the one most of its
    old top-k share, and at least ``min_count`` of each k share it (the first-seen
    value on a tie). Returns ``{"shape": {channel: shape}, "texture": {...}}``.
    """
    new_labels, old_labels = _labels(new_labels), _labels(old_labels)
    if new_labels.shape[0] != old_labels.shape[0]:
        raise ValueError(f"one row per channel in both: {new_labels.shape[0]} new, "
                         f"{old_labels.shape[0]} old")
    kept: dict[str, dict[int, str]] = {what: {} for what in INGREDIENTS}
    for c in range(len(new_labels)):
        for which, what in enumerate(INGREDIENTS):
            new_value, new_count = _most_shared(new_pairs, new_labels[c], which)
            old_value, old_count = _most_shared(old_pairs, old_labels[c], which)
            if new_value == old_value and min(new_count, old_count) >= min_count:
                kept[what][c] = new_value
    return kept


def _most_shared(pairs, labels: torch.Tensor, which: int) -> tuple[str, int]:
    """The ingredient ``which`` most of ``labels`` share, and how many share it."""
    return Counter(pairs[int(y)][which] for y in labels).most_common(1)[0]


# --------------------------------------------------------------------------- curves

@dataclass(repr=False)
class Curve:
    """Accuracy over shots per class, ``accuracy [len(shots), draws]``, one column per draw."""
    shots: list[int]
    accuracy: torch.Tensor
    label: str

    @property
    def mean(self) -> torch.Tensor:
        return self.accuracy.mean(1)

    @property
    def std(self) -> torch.Tensor:
        """The spread over draws (standard deviation; 0 for a single draw)."""
        return self.accuracy.std(1) if self.accuracy.shape[1] > 1 else torch.zeros(len(self.shots))

    def at(self, shots: int) -> str:
        """``"mean ± std"`` in percent at ``shots``, or a dash where the curve has no such point."""
        if shots not in self.shots:
            return "—"
        i = self.shots.index(shots)
        return f"{100 * self.mean[i]:.1f} ± {100 * self.std[i]:.1f}"

    def __repr__(self) -> str:
        rows = ", ".join(f"{s}: {100 * m:.1f} ± {100 * d:.1f}%" for s, m, d in zip(self.shots, self.mean, self.std))
        return f"Curve({self.label!r}, {self.accuracy.shape[1]} draws; {rows})"


def gap(curve: Curve, baseline: Curve) -> dict[int, float]:
    """``curve`` minus ``baseline`` in percentage points of mean accuracy, ``{shots: gap}``
    for every number of shots both curves have (in ``curve``'s order)."""
    return {s: 100 * float(curve.mean[curve.shots.index(s)] - baseline.mean[baseline.shots.index(s)])
            for s in curve.shots if s in baseline.shots}


def _shot_list(shots) -> list[int]:
    return [int(shots)] if isinstance(shots, int) else [int(s) for s in shots]


def probe_curve(feats: torch.Tensor, labels, train, test, shots=SHOTS, draws: int = 5, *, seed: int = 0,
                l2: float | None = L2, loss: str = "softmax", device=None, label: str = "linear probe",
                progress: bool = True) -> Curve:
    """Probe accuracy on ``test`` with ``shots`` images per class drawn from ``train``.
    ``loss``: ``"softmax"`` or ``"hinge"`` (the linear SVM); ``l2=None`` chooses the
    regularisation for each draw by cross-validation on its own images
    (:func:`zfcourse.probe.choose_l2`)."""
    labels, shots = _labels(labels), _shot_list(shots)
    num_classes = int(labels.max()) + 1
    acc = torch.zeros(len(shots), draws)
    with tqdm(total=len(shots) * draws, desc=label, disable=not progress, leave=False) as bar:
        for i, s in enumerate(shots):
            for d, idx in enumerate(draw_shots(labels, train, s, draws, seed)):
                x, y = feats[idx], labels[idx]
                c = choose_l2(x, y, num_classes, loss=loss, device=device) if l2 is None else l2
                probe = fit_probe(x, y, num_classes, c, device=device, loss=loss)
                acc[i, d] = mean_class_accuracy(probe.predict(feats[test]), labels[test])
                bar.update()
    return Curve(shots, acc, label)


def layer_table(feats: dict[str, torch.Tensor], labels, train, test, shots: int, draws: int = 5, *, seed: int = 0,
                l2: float | None = L2, loss: str = "softmax", device=None,
                progress: bool = True) -> dict[str, Curve]:
    """Table 7's experiment: one probe per layer, all on the same draws of ``shots`` per class."""
    return {layer: probe_curve(f, labels, train, test, shots, draws, seed=seed, l2=l2, loss=loss,
                               device=device, label=layer, progress=progress)
            for layer, f in tqdm(feats.items(), desc="layers", disable=not progress, leave=False)}


def split_table(feats: dict[str, torch.Tensor], labels, splits, shots: int, *, l2: float | None = None,
                loss: str = "softmax", device=None, progress: bool = True) -> dict[str, Curve]:
    """Table 7 over several train/test splits (``splits``: ``(train, test)`` pairs, e.g. from
    :func:`split_per_class` with different seeds): per layer, one draw of ``shots`` per
    class from each split's training pool, scored on its test set; ``Curve.accuracy`` is
    ``[1, len(splits)]``, so ``std`` is the spread over splits. Regularisation chosen by
    validation by default."""
    splits = list(splits)
    if not splits:
        raise ValueError("splits must hold at least one (train, test) pair")
    out = {}
    for layer, f in tqdm(feats.items(), desc="layers", disable=not progress, leave=False):
        curves = [probe_curve(f, labels, train, test, shots, 1, seed=k, l2=l2, loss=loss,
                              device=device, progress=False) for k, (train, test) in enumerate(splits)]
        out[layer] = Curve(curves[0].shots, torch.cat([c.accuracy for c in curves], 1), layer)
    return out


def scratch_curve(make_model: Callable[[], nn.Module], data: Dataset, labels, train, test, shots=SHOTS,
                  draws: int = 3, *, seed: int = 0, steps: int = 60, batch_size: int = 25, lr: float = 0.05,
                  weight_decay: float = 5e-4, device=None, label: str = "from scratch",
                  progress: bool = True) -> Curve:
    """The baseline of Tables 4 and 5: the same architecture, all layers trained on the few images.

    For every draw a fresh ``make_model()`` (seeded by the draw; its last layer resized
    to the task's classes) is trained with :func:`zfcourse.train.train` (SGD, batch
    normalisation folded in at the end) for ``steps`` steps of ``batch_size`` images,
    whatever the number of shots: a fixed budget, the same for every curve point.
    """
    labels, shots = _labels(labels), _shot_list(shots)
    num_classes = int(labels.max()) + 1
    device = torch.device(device) if device is not None else default_device()
    test_set = _subset(data, test)
    acc = torch.zeros(len(shots), draws)
    with tqdm(total=len(shots) * draws, desc=label, disable=not progress, leave=False) as bar:
        for i, s in enumerate(shots):
            for d, idx in enumerate(draw_shots(labels, train, s, draws, seed)):
                with seeded(_seed(seed, s, d)):
                    model = _with_classes(make_model(), num_classes)
                n = len(idx)
                bs = min(batch_size, n)
                while n % bs == 1:  # batch normalisation cannot train on a last batch of one image
                    bs += 1
                epochs = math.ceil(steps / math.ceil(n / bs))
                train_set = _subset(data, idx)
                train_set = train_set if _tensor_backed(train_set) else _InMemory(train_set)
                train_model(model, train_set, epochs=epochs, lr=lr, batch_size=bs, warmup_epochs=0.1 * epochs,
                            weight_decay=weight_decay, batchnorm=True, seed=_seed(seed, s, d), device=device,
                            progress=False)
                last = layer_names(model)[-1]
                logits = features(model, test_set, last, cache=False, progress=False)[last]
                acc[i, d] = mean_class_accuracy(logits.argmax(1), labels[test])
                bar.update()
    return Curve(shots, acc, label)


def _with_classes(model: nn.Module, num_classes: int) -> nn.Module:
    """The model with its last dense layer replaced by a fresh one for ``num_classes``."""
    name, last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    if last.out_features != num_classes:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, nn.Linear(last.in_features, num_classes))
    return model


@dataclass(repr=False)
class Task:
    """A new classification task: its images, labels, class names and a fixed split."""
    name: str
    data: Dataset
    labels: torch.Tensor
    classes: list[str]
    train: torch.Tensor  # the training pool, dataset indices
    test: torch.Tensor

    def __repr__(self) -> str:
        return (f"{self.name}: {len(self.classes)} classes, a training pool of {len(self.train):,} images "
                f"and {len(self.test):,} test images (disjoint)")


CALTECH_SPLIT = dict(test_per_class=50, min_train=30)


def new_task(world, seed: int = 0) -> Task:
    """The world's transfer task (``world.task``): held-out synthetic classes, or Caltech-101 for ImageNet.

    Synthetic: ``world.heldout``, a third of each class for testing and the rest as the
    training pool. Imagenet: Caltech-101 preprocessed as the world's model expects, up to
    50 test images per class and the rest (at least 30, the paper's largest training set)
    as the pool (:data:`CALTECH_SPLIT`).
    """
    return world.task(seed)
