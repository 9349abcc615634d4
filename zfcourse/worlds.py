"""The two worlds a chapter can run in.

* ``imagenet``: torchvision's AlexNet with ``IMAGENET1K_V1`` weights, and the
  validation split of torchvision's Imagenette (ten ImageNet classes) as the
  validation set. Downloads once (torchvision verifies the files), then runs
  from the cache.
* ``synthetic``: no download at all. Procedural images (:mod:`zfcourse.data.synthetic`)
  and small AlexNet-/ZF-style networks that the package trains on them in about
  a minute on a CPU and caches on disk.

``ZFCOURSE_WORLD`` (``imagenet`` | ``synthetic`` | ``auto``, default ``auto``)
chooses; ``auto`` takes ``imagenet`` when its files are cached or its download
servers answer within two seconds, else ``synthetic``, and says why.
"""
from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from . import atlas, models, transfer
from .data import synthetic
from .data.normalization import Normalization
from .infra import current
from .infra.cache import cache_dir, key
from .infra.device import default_device, seeded
from .infra.fingerprint import fingerprint
from .infra.paths import data_dir, env_int, imagenette_folder, imagenette_size
from .train import History, train_cached

WORLDS = ("imagenet", "synthetic", "auto")


@dataclass(eq=False)
class World:
    """A model, its validation set and how to go between pixels and model input."""

    name: str
    model: nn.Module
    val: Dataset
    classes: list[str]
    reason: str
    image_size: int
    normalize: Callable[[torch.Tensor], torch.Tensor]  # [0, 1] images -> model input
    denormalize: Callable[[torch.Tensor], torch.Tensor]  # model input -> [0, 1] images
    preprocess: Callable  # a PIL image -> one model input [3, S, S]
    make_model: Callable[[], nn.Module]  # a fresh, untrained model of the same architecture
    device: torch.device
    info: dict = field(default_factory=dict)
    train: Dataset | None = None
    heldout: Dataset | None = None  # synthetic: images of classes the model never saw
    # What each experiment takes from the world, so that only this module knows which it is:
    mini_data: Callable[[], tuple[Dataset, Dataset]] | None = None  # 64 px (train, val), chapter 5
    mini_trainer: Callable[..., tuple[nn.Module, History]] | None = None  # (arch, progress) -> (model, history)
    task: Callable[[int], "transfer.Task"] | None = None  # seed -> the transfer task, chapter 6
    decoder_source: str = "train"  # the images chapter 2's learned decoder trains on: "train" or "val"

    def describe(self) -> str:
        lines = [f"World: {self.name} ({self.reason}).",
                 f"Model: {self.info.get('model', type(self.model).__name__)} on {self.device}.",
                 f"Validation set: {len(self.val):,} images, {self.info.get('val_classes', len(self.classes))} classes."]
        if "val_accuracy" in self.info:
            lines.append(f"Validation accuracy of the model: {100 * self.info['val_accuracy']:.1f}%.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()

    def _repr_markdown_(self) -> str:
        return "\n".join(f"> {line}  " for line in self.describe().splitlines())


def world(name: str | None = None) -> World:
    """The world a chapter runs in: ``name``, else ``$ZFCOURSE_WORLD``, else ``auto``.

    Built once per process and shared by every call.
    """
    name = (name or os.environ.get("ZFCOURSE_WORLD") or "auto").strip().lower()
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; valid: {', '.join(WORLDS)} (argument or ZFCOURSE_WORLD)")
    return _world(name)


@functools.lru_cache(maxsize=None)
def _world(name: str) -> World:
    if name == "synthetic":
        return synthetic_world("chosen explicitly")
    if name == "imagenet":
        return imagenet_world("chosen explicitly")
    ok, why = imagenet_available()
    if ok:
        try:
            return imagenet_world(f"auto: {why}")
        except RuntimeError as e:
            why = str(e).splitlines()[0]
    return synthetic_world(f"auto: the imagenet world is not available here: {why}")


# --------------------------------------------------------------------------- synthetic

SYNTHETIC = dict(seed=0, n_train=16000, n_val=2000, n_heldout=1500)
SNAPSHOTS = (1, 2, 4, 7)  # epochs after which chapter 5 looks at the features (Fig. 4)
RECIPE = dict(epochs=7, lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, warmup_epochs=0.5, batchnorm=True)
ARCHS = {"alexnet": models.mini_alexnet, "zfnet": models.mini_zfnet}


def synthetic_data(split: str) -> synthetic.SyntheticImages:
    """The synthetic world's ``train``, ``val`` or ``heldout`` split (rendered once per process)."""
    if split not in synthetic.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(synthetic.SPLITS)}")
    return _synthetic_data(split, SYNTHETIC["n_" + split], SYNTHETIC["seed"])


@functools.lru_cache(maxsize=None)
def _synthetic_data(split: str, n: int, seed: int) -> synthetic.SyntheticImages:
    return synthetic.SyntheticImages(split, n, seed)


def synthetic_model(arch: str = "alexnet", renorm_radius: float | None = None, progress: bool = True):
    """A mini network trained on the synthetic world, from the cache or trained now.

    Returns ``(model, meta)`` with ``meta`` holding the validation accuracy, the
    training time and the training history, including the weights after the epochs
    in :data:`SNAPSHOTS` (``meta["history"].snapshots``, chapter 5). The cache
    file is a resumable :func:`zfcourse.train.train_cached` checkpoint keyed by the
    architecture, the initial weights, the data and the training recipe, so changing
    any of them trains afresh, and an interrupted run continues where it stopped.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)}")
    make = functools.partial(ARCHS[arch], len(synthetic.TRAIN_PAIRS))
    recipe = dict(RECIPE, renorm_radius=renorm_radius)
    if renorm_radius is not None:  # renormalisation only means something without batch normalisation
        recipe["batchnorm"] = False
    recipe["snapshots"] = tuple(e for e in SNAPSHOTS if e <= recipe["epochs"])
    with seeded(SYNTHETIC["seed"]):
        initial = make()
    k = key(arch=str(initial), init=fingerprint(initial), data=SYNTHETIC, generator=synthetic.VERSION, recipe=recipe)
    model, hist = train_cached(make, synthetic_data("train"), synthetic_data("val"), seed=SYNTHETIC["seed"],
                               path=cache_dir() / "models" / f"mini_{arch}-{k}.pt", progress=progress,
                               **recipe)
    meta = {"val_accuracy": hist.val_accuracy[-1], "train_seconds": hist.seconds, "history": hist}
    return model, meta


def synthetic_world(reason: str) -> World:
    model, meta = synthetic_model("alexnet")
    val = synthetic_data("val")
    size = synthetic.IMAGE_SIZE

    def preprocess(image):
        from torchvision.transforms.functional import center_crop, pil_to_tensor, resize
        x = center_crop(resize(pil_to_tensor(image.convert("RGB")), size, antialias=True), size)
        return synthetic.normalize(x)

    return World(
        name="synthetic", model=model.to(default_device()), val=val, classes=val.classes, reason=reason,
        image_size=size, normalize=synthetic.normalize, denormalize=synthetic.denormalize,
        preprocess=preprocess, make_model=lambda: ARCHS["alexnet"](len(val.classes)),
        device=default_device(), train=synthetic_data("train"),
        heldout=synthetic_data("heldout"),
        mini_data=lambda: (synthetic_data("train"), synthetic_data("val")),
        mini_trainer=_synthetic_mini, task=functools.partial(heldout_task, synthetic_data("heldout")),
        info={"model": "mini AlexNet (11x11 stride-4 first layer)", "val_accuracy": meta["val_accuracy"],
              "train_seconds": meta["train_seconds"]},
    )


def _synthetic_mini(arch: str, progress: bool = True) -> tuple[nn.Module, History]:
    model, meta = synthetic_model(arch, progress=progress)
    return model.to(default_device()).eval(), meta["history"]


def heldout_task(data: synthetic.SyntheticImages, seed: int = 0) -> "transfer.Task":
    """Held-out synthetic classes: a third of each class for testing, the rest the training pool."""
    train, test = transfer.split_per_class(data.labels, len(data) // (3 * len(data.classes)), seed=seed)
    return transfer.Task("held-out synthetic classes", data, torch.as_tensor(data.labels).long(),
                         list(data.classes), train, test)


def own_network(world) -> atlas.Network:
    """The world's own network as the atlas shows it (chapter 5's minis are added by
    :func:`zfcourse.minis.atlas_networks`)."""
    if world.name == "synthetic":
        return atlas.Network("mini-alexnet", "mini AlexNet", world.model, world.val, world.classes,
                             world.denormalize, world.name,
                             f"synthetic validation set, {len(world.val):,} images")
    return atlas.Network("alexnet", "AlexNet (torchvision, ImageNet weights)", world.model, world.val,
                         world.classes, world.denormalize, world.name,
                         f"Imagenette validation set, {len(world.val):,} images at {world.image_size} px")


def _imagenet_files() -> dict[str, Path]:
    from torchvision.models import AlexNet_Weights

    return {
        "AlexNet IMAGENET1K_V1 weights": Path(torch.hub.get_dir()) / "checkpoints" / Path(AlexNet_Weights.IMAGENET1K_V1.url).name,
        "Imagenette validation images": imagenette_folder("val"),
    }


def _reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def imagenet_available() -> tuple[bool, str]:
    """Whether the imagenet world can run, and why (cached files, or servers reachable)."""
    missing = {what: p for what, p in _imagenet_files().items() if not p.exists()}
    if not missing:
        return True, "its files are cached"
    hosts = ("download.pytorch.org", "s3.amazonaws.com")
    if all(_reachable(h) for h in hosts):
        return True, "its files download on first use"
    return False, "missing " + "; ".join(f"{w} ({p})" for w, p in missing.items()) + " and no connection to " + " or ".join(hosts)


def imagenet_world(reason: str, val_size: int | None = None, download: bool = True) -> World:
    """torchvision AlexNet (ImageNet weights) with Imagenette's validation split.

    ``val_size`` (or ``$ZFCOURSE_VAL_SIZE``) keeps that many validation images,
    evenly spread over the ten classes; default all 3,925. Missing files are
    downloaded (and verified) by torchvision unless ``download=False``.
    """
    from torchvision.datasets import Imagenette
    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1
    files = _imagenet_files()

    def failure(problem: str) -> RuntimeError:
        needs = "\n".join(f"  - {w}: {p}" + ("" if p.exists() else "  (missing)") for w, p in files.items())
        return RuntimeError(
            f"the imagenet world cannot load its files: {problem}.\nIt needs:\n{needs}\n"
            "Run once with an internet connection (torchvision downloads and verifies them), or copy them "
            "there; set TORCH_HOME / ZFCOURSE_DATA to use other folders, or ZFCOURSE_WORLD=synthetic."
        )

    if not download and not all(p.exists() for p in files.values()):
        raise failure("some are missing and downloading is off")
    try:
        model = models.alexnet(pretrained=True)
        val = Imagenette(str(data_dir()), split="val", size=imagenette_size(),
                         download=not files["Imagenette validation images"].exists(), transform=weights.transforms())
    except Exception as e:
        raise failure(f"{type(e).__name__}: {e}") from e
    categories = weights.meta["categories"]
    to_imagenet = [next(categories.index(n) for n in names if n in categories) for names in val.classes]
    val.target_transform = to_imagenet.__getitem__
    val_size = val_size or env_int("ZFCOURSE_VAL_SIZE", 0) or len(val)
    if val_size < len(val):
        val = Subset(val, torch.linspace(0, len(val) - 1, val_size).round().long().tolist())
    tf = weights.transforms()
    scale = Normalization(tuple(tf.mean), tuple(tf.std))
    return World(
        name="imagenet", model=model.eval().to(default_device()), val=val, classes=list(categories), reason=reason,
        image_size=tf.crop_size[0], normalize=scale.normalize, denormalize=scale.denormalize,
        preprocess=tf, make_model=models.alexnet, device=default_device(),
        info={"model": "AlexNet, torchvision IMAGENET1K_V1", "val_classes": 10},
        mini_data=_imagenette_64, mini_trainer=_imagenette_mini, task=functools.partial(caltech_task, tf),
        decoder_source="val",
    )


def _imagenette_64() -> tuple[Dataset, Dataset]:
    from .data.imagenette import imagenette

    return imagenette("train", 64), imagenette("val", 64)


def _imagenette_mini(arch: str, progress: bool = True) -> tuple[nn.Module, dict]:
    train_set, val_set = _imagenette_64()
    recipe = dict(RECIPE, snapshots=tuple(e for e in SNAPSHOTS if e <= RECIPE["epochs"]))
    return train_cached(functools.partial(ARCHS[arch], len(train_set.classes)), train_set, val_set,
                        device=default_device(), progress=progress, **recipe)


def caltech_task(preprocess, seed: int = 0) -> "transfer.Task":
    """Caltech-101 as ``preprocess`` prepares it: up to 50 test images per class, the rest the pool."""
    from .data.caltech import caltech101

    data = caltech101(transform=preprocess)
    train, test = transfer.split_per_class(data.labels, **transfer.CALTECH_SPLIT, seed=seed)
    return transfer.Task("Caltech-101", data, data.labels, data.classes, train, test)


current.provide(lambda: world())   # looked up at each call: the world in use now
