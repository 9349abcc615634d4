"""Training as in the paper (Sec. 3): SGD with momentum, dropout, filter renormalisation.

Zeiler & Fergus train with mini-batches of 128, learning rate 1e-2, momentum 0.9,
dropout 0.5 in the dense layers, and "renormalize each filter in the
convolutional layers whose RMS value exceeds a fixed radius of 1e-1 to this fixed
radius". Their learning rate is annealed by hand when validation error plateaus;
here it follows a short linear warm-up and a cosine schedule to zero, which needs no
supervision.

``snapshots`` keeps copies of the weights after chosen epochs (the paper's Fig. 4
shows the features after epochs 1, 2, 5, 10, 20, 30, 40 and 64); ``checkpoint``
makes a run resumable (see :mod:`zfcourse.infra.checkpoint`), and :func:`train_cached`
builds on it: a run that was interrupted continues where it stopped, one that
finished is loaded.

``batchnorm=True`` trains with batch normalisation (Ioffe & Szegedy, 2015, a year
after the paper) after every conv and hidden dense layer and folds it into their
weights at the end: training converges several times faster, and the network that
comes out has exactly the modules it went in with.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .filters import filter_rms
from .infra.cache import cache_dir, key
from .infra.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from .infra.checks import count, number
from .infra.device import default_device, placed, seeded
from .infra.fingerprint import fingerprint
from .infra.progress import tqdm
from .models import conv_of, sequence


def renormalize_filters(model: nn.Module, radius: float = 0.1, layers=None) -> int:
    """Rescale every conv filter whose RMS exceeds ``radius`` to RMS ``radius``.

    The RMS of filter ``f`` is ``sqrt(mean(W[f]**2))`` over its input channels and
    taps; filters at or below the radius are left untouched. ``layers`` (conv layer
    names such as ``"conv1"``) limits the rule to those layers; by default it
    applies to every conv layer, as in the paper. Returns how many filters were
    rescaled.
    """
    return _cap(_convs(model, layers), radius)


def _convs(model: nn.Module, layers) -> list[nn.Conv2d]:
    """The conv modules named by ``layers`` (all of them for ``None``); unknown names raise, listing the valid ones."""
    if layers is None:
        return [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return [conv_of(model, name) for name in layers]


@torch.no_grad()
def _cap(convs: list[nn.Conv2d], radius: float) -> int:
    rescaled = 0
    for m in convs:
        rms = filter_rms(m)
        over = rms > radius
        m.weight[over] *= (radius / rms[over]).view(-1, 1, 1, 1)
        rescaled += int(over.sum())
    return rescaled


def with_batchnorm(model: nn.Module) -> nn.Sequential:
    """The model's modules in order, with batch normalisation after every conv and hidden dense layer.

    The returned network shares its conv and dense modules with ``model``; after
    training, :func:`fold_batchnorm` moves the normalisation into their weights.
    """
    mods = sequence(model)
    last_linear = max(i for i, m in enumerate(mods) if isinstance(m, nn.Linear))
    layers = []
    for i, m in enumerate(mods):
        layers.append(m)
        if isinstance(m, nn.Conv2d):
            layers.append(nn.BatchNorm2d(m.out_channels))
        elif isinstance(m, nn.Linear) and i != last_linear:
            layers.append(nn.BatchNorm1d(m.out_features))
    return nn.Sequential(*layers).to(next(model.parameters()).device)


@torch.no_grad()
def fold_batchnorm(bn_model: nn.Sequential) -> None:
    """Fold each BatchNorm's running statistics and affine map into the layer before it.

    In eval mode ``bn(conv(x)) = conv'(x)`` with ``W' = W * g / s`` and
    ``b' = (b - mu) * g / s + beta``, ``s = sqrt(var + eps)``: the shared conv and
    dense modules then compute what the normalised network computed.
    """
    mods = list(bn_model)
    for prev, bn in zip(mods, mods[1:]):
        if isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            prev.weight.mul_(scale.view(-1, *([1] * (prev.weight.dim() - 1))))
            prev.bias.copy_((prev.bias - bn.running_mean) * scale + bn.bias)


def _batches(dataset: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None):
    """Batches of (images, labels); tensor-backed datasets are sliced directly, which
    is several times faster than collating items one by one."""
    if hasattr(dataset, "images") and hasattr(dataset, "labels") and hasattr(dataset, "transform_batch"):
        n = len(dataset)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            yield dataset.transform_batch(dataset.images[idx]), dataset.labels[idx]
    else:
        yield from DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 256, device=None) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (a ValueError for an empty one)."""
    if len(dataset) == 0:
        raise ValueError("dataset holds no images: its accuracy is undefined")
    device = device or next(model.parameters()).device
    correct = total = 0
    with placed(model, device):
        for x, y in _batches(dataset, batch_size, False, None):
            correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
            total += len(y)
    return correct / total


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 128, device=None,
            progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (softmax of the logits) of ``model`` for every item of ``dataset``,
    in order, and the items' labels: ``([N, classes], [N])``, on the CPU."""
    device = device or next(model.parameters()).device
    probs, labels = [], []
    with placed(model, device):
        batches = _batches(dataset, batch_size, False, None)
        total = math.ceil(len(dataset) / batch_size)
        for x, y in tqdm(batches, total=total, desc="predicting", disable=not progress):
            probs.append(model(x.to(device)).softmax(1).cpu())
            labels.append(torch.as_tensor(y))
    return torch.cat(probs), torch.cat(labels)


def top_k_errors(probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    """The top-k error of each ``k`` in ``ks`` (Table 2): the share of items whose label is
    not among the ``k`` classes of largest probability. ``probs`` ``[N, classes]`` as from
    :func:`predict`; ties count against the label (the lower class index ranks first)."""
    probs, labels = torch.as_tensor(probs), torch.as_tensor(labels)
    if probs.dim() != 2 or len(probs) != len(labels) or len(probs) == 0:
        raise ValueError(f"expected probs [N, classes] and N labels, N > 0; got "
                         f"{list(probs.shape)} and {list(labels.shape)}")
    out = {}
    for k in ks:
        k = count(k, "k")
        if k > probs.shape[1]:
            raise ValueError(f"k must be at most the number of classes ({probs.shape[1]}), got {k}")
        label_p = probs.gather(1, labels[:, None].long())
        classes = torch.arange(probs.shape[1])
        above = (probs > label_p) | ((probs == label_p) & (classes[None] < labels[:, None]))
        out[k] = float((above.sum(1) >= k).float().mean())
    return out


def confident_mistakes(probs: torch.Tensor, labels: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Indices of the wrongly classified items, the most confident mistake first (the first
    ``k`` of them if given); ``probs`` ``[N, classes]`` as from :func:`predict`."""
    wrong = (probs.argmax(1) != labels).nonzero().flatten()
    order = probs[wrong].max(1).values.argsort(descending=True, stable=True)
    return wrong[order][:k]


@torch.no_grad()
def _snapshot(model: nn.Module, net: nn.Module, batchnorm: bool) -> dict:
    """The model's weights now, on the CPU; with batch normalisation, folded into a
    deep copy so that training goes on with the unfolded network untouched."""
    if batchnorm:
        model, net = copy.deepcopy((model, net))  # one memo: the copies share modules as the originals do
        fold_batchnorm(net.eval())
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


_REQUIRED = {"loss", "train_accuracy", "val_accuracy", "seconds"}


@dataclass(repr=False)
class History:
    """What :func:`train` records, one entry per epoch: the mean training ``loss``, the
    ``train_accuracy`` over the epoch's batches, the ``val_accuracy`` (empty without a
    validation set), the filters ``rescaled`` by renormalisation (empty without it), and
    ``snapshots``, epoch -> state dict after that epoch (empty unless asked for);
    ``seconds`` of training in all."""
    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    rescaled: list[int] = field(default_factory=list)
    snapshots: dict[int, dict] = field(default_factory=dict)
    seconds: float = 0.0

    def __repr__(self) -> str:
        val = f", val_accuracy={self.val_accuracy[-1]:.3f}" if self.val_accuracy else ""
        return f"History(epochs={len(self.loss)}{val}, seconds={self.seconds:.0f})"

    def state(self) -> dict:
        """Plain containers, for a checkpoint loaded with ``weights_only=True``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict, epochs: int) -> History:
        """The history of a checkpoint after ``epochs`` epochs; a ValueError if it does not
        hold one entry per epoch. (Checkpoints written before there was a History leave
        out an empty ``rescaled`` or ``snapshots``.)"""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(state, dict) or not _REQUIRED <= set(state) <= names:
            raise ValueError(f"a training history has the fields {', '.join(sorted(names))}")
        history = cls(**state)
        for name in ("loss", "train_accuracy"):
            values = getattr(history, name)
            if len(values) != epochs or not all(math.isfinite(v) for v in values):
                raise ValueError(f"history.{name} must hold {epochs} finite values, got {values!r}")
        return history


def train(model: nn.Module, train_set: Dataset, val_set: Dataset | None = None, *, epochs: int = 10,
          lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 128,
          warmup_epochs: float = 0.0, renorm_radius: float | None = None, renorm_layers=None, batchnorm: bool = False,
          seed: int = 0, snapshots=(), on_snapshot: Callable[[int, dict], None] | None = None,
          checkpoint: str | Path | None = None, device=None, progress: bool = True) -> History:
    """Train ``model`` in place; return its :class:`History`.
    ``renorm_radius`` renormalises filters after every step (see
    :func:`renormalize_filters`), in all conv layers or in ``renorm_layers``.

    Deterministic under ``seed`` on a given device: the initial weights are the
    caller's, the batch order and dropout masks come from seeded generators.
    ``snapshots`` (epoch numbers, 1-based) fills ``history.snapshots`` with the state
    dict of ``model`` after each of those epochs (batch normalisation folded);
    ``on_snapshot(epoch, state_dict)`` is called with each as it is taken.
    ``checkpoint`` (a path) saves the whole training state after every epoch and,
    if the file exists, first resumes from it: the result is the same as without
    the interruption.
    """
    epochs, batch_size = count(epochs, "epochs"), count(batch_size, "batch_size")
    lr, momentum = number(lr, "lr", 0, above=True), number(momentum, "momentum", 0)
    weight_decay, warmup_epochs = number(weight_decay, "weight_decay", 0), number(warmup_epochs, "warmup_epochs", 0)
    if renorm_radius is not None:
        renorm_radius = number(renorm_radius, "renorm_radius", 0, above=True)
    if len(train_set) == 0:
        raise ValueError("train_set holds no images")
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    if batchnorm and renorm_radius is not None:
        raise ValueError("filter renormalisation is meaningless under batch normalisation (it undoes any rescaling); use one")
    if renorm_layers is not None and renorm_radius is None:
        raise ValueError("renorm_layers needs a renorm_radius")
    capped = _convs(model, renorm_layers) if renorm_radius is not None else []
    snapshots = sorted({int(e) for e in snapshots})
    if snapshots and not 1 <= snapshots[0] <= snapshots[-1] <= epochs:
        raise ValueError(f"snapshot epochs must lie in 1..{epochs} (epochs={epochs}), got {snapshots}")
    # the checkpoint's recipe: a resumed run must have been made with the same one
    recipe = dict(epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay, batch_size=batch_size,
                  warmup_epochs=warmup_epochs, renorm_radius=renorm_radius, batchnorm=batchnorm, seed=seed,
                  **({} if renorm_layers is None else {"renorm_layers": list(renorm_layers)}),
                  snapshots=snapshots, n_train=len(train_set))
    with seeded(seed):  # dropout draws from the global generator: seeded, and the caller's put back
        return _Run(model, recipe, capped, device).fit(train_set, val_set, on_snapshot, checkpoint, progress)


class _Run:
    """One training run: the network (with batch normalisation, if asked), its optimiser,
    learning-rate schedule and batch-order generator, and its history."""

    def __init__(self, model: nn.Module, recipe: dict, capped: list[nn.Conv2d], device):
        self.model, self.recipe, self.capped, self.device = model, recipe, capped, device
        per_epoch = math.ceil(recipe["n_train"] / recipe["batch_size"])
        self.steps, self.warm = recipe["epochs"] * per_epoch, recipe["warmup_epochs"] * per_epoch
        self._start()

    def _start(self) -> None:
        """The state before the first epoch."""
        recipe = self.recipe
        self.net = with_batchnorm(self.model) if recipe["batchnorm"] else self.model
        self.order = torch.Generator().manual_seed(recipe["seed"])
        self.opt = torch.optim.SGD(self.net.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                                   weight_decay=recipe["weight_decay"])
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._schedule)
        self.history, self.done = History(), 0

    def _schedule(self, step: int) -> float:
        """A linear warm-up (no normalisation layers to tame early steps), then a cosine."""
        if step < self.warm:
            return (step + 1) / self.warm
        return 0.5 * (1 + math.cos(math.pi * (step - self.warm) / max(self.steps - self.warm, 1)))

    def fit(self, train_set, val_set, on_snapshot, checkpoint, progress) -> History:
        if checkpoint is not None:
            self._resume(checkpoint)
        epochs, history = self.recipe["epochs"], self.history
        start = time.perf_counter() - history.seconds
        bar = tqdm(total=self.steps, initial=self.done * (self.steps // max(epochs, 1)), desc="training",
                   disable=not progress, leave=False)
        self.net.train()
        for epoch in range(self.done + 1, epochs + 1):
            self._epoch(train_set, bar)
            if val_set is not None:
                history.val_accuracy.append(evaluate(self.net, val_set, device=self.device))
                bar.set_postfix(val_acc=f"{history.val_accuracy[-1]:.3f}")
            if epoch in self.recipe["snapshots"]:
                history.snapshots[epoch] = _snapshot(self.model, self.net, self.recipe["batchnorm"])
                if on_snapshot is not None:
                    on_snapshot(epoch, history.snapshots[epoch])
            history.seconds = time.perf_counter() - start
            if checkpoint is not None:
                save_checkpoint(checkpoint, recipe=self.recipe, epoch=epoch, net=self.net, optimizer=self.opt,
                                scheduler=self.sched, generator=self.order, history=history.state())
        bar.close()
        if self.recipe["batchnorm"]:
            fold_batchnorm(self.net.eval())
        history.seconds = time.perf_counter() - start
        self.model.eval()
        return history

    def _epoch(self, train_set, bar) -> None:
        """One pass over the training set; its loss, accuracy and rescalings recorded."""
        loss_fn, radius = nn.CrossEntropyLoss(), self.recipe["renorm_radius"]
        total_loss = correct = seen = rescaled = 0
        for x, y in _batches(train_set, self.recipe["batch_size"], True, self.order):
            x, y = x.to(self.device), y.to(self.device)
            out = self.net(x)
            loss = loss_fn(out, y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            if radius is not None:
                rescaled += _cap(self.capped, radius)
            total_loss += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
            bar.update()
        self.history.loss.append(total_loss / seen)
        self.history.train_accuracy.append(correct / seen)
        if radius is not None:
            self.history.rescaled.append(rescaled)

    def _resume(self, checkpoint) -> None:
        """Continue from the checkpoint's state, if there is a readable one; a checkpoint whose
        contents are not a valid state (no weights, a history without its fields, non-finite
        weights) is trained anew, with a warning, from the caller's initial weights."""
        state = load_checkpoint(checkpoint, self.recipe)
        if state is None:
            return
        initial = copy.deepcopy(self.net.state_dict())
        try:
            history = History.from_state(state["history"], state["epoch"])
            if not all(torch.isfinite(v).all() for v in state["net"].values() if v.is_floating_point()):
                raise ValueError("the weights are not all finite")
            self.net.load_state_dict(state["net"])
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"], self.order)
        except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
            warnings.warn(f"checkpoint {checkpoint} does not hold a valid training state "
                          f"({type(e).__name__}: {e}); training from the start", stacklevel=5)
            self.net.load_state_dict(initial)
            self._start()
            return
        self.done, self.history = state["epoch"], history


def train_cached(make_model: Callable[[], nn.Module], train_set: Dataset, val_set: Dataset | None = None, *,
                 path: str | Path | None = None, seed: int = 0, on_snapshot: Callable[[int, dict], None] | None = None,
                 device=None, progress: bool = True, **recipe) -> tuple[nn.Module, History]:
    """A model trained by :func:`train`, resumed or loaded from a checkpoint file.

    ``make_model()`` is called with the global generator seeded with ``seed`` (and the
    caller's random state put back), so the initial weights are fixed too. The checkpoint lives at ``path``, by default in
    :func:`zfcourse.infra.cache.cache_dir` under a key of the initial weights, the
    training images and the recipe: changing any of them trains anew. After every
    epoch the state is saved atomically; calling again after an interruption
    continues from the last completed epoch, after completion it only loads.
    ``recipe`` holds :func:`train`'s keyword arguments (``epochs``, ``lr``,
    ``snapshots``, ...); all snapshots, old and new, are in ``history.snapshots``,
    while ``on_snapshot`` sees only those taken in this call.
    Returns ``(model, history)``, the model in eval mode on ``device``.
    """
    with seeded(seed):
        model = make_model()
    if path is None:
        val = None if val_set is None else fingerprint(val_set)
        name = key(init=fingerprint(model), data=fingerprint(train_set), val=val, seed=seed, **recipe)
        path = cache_dir() / "training" / f"{name}.pt"
    history = train(model, train_set, val_set, seed=seed, checkpoint=path, on_snapshot=on_snapshot, device=device,
                    progress=progress, **recipe)
    return model, history
