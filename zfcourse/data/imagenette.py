"""Imagenette as small in-memory images, for training networks in the imagenet world.

Chapter 5 trains an AlexNet-style and a ZF-style network from scratch and
compares them (Sec. 4.1). In the imagenet world they train on torchvision's
Imagenette (ten ImageNet classes, 9,469 training and 3,925 validation
pictures) at reduced resolution: the mini networks take 64 x 64 images, so that a
run takes minutes on a GPU and stays bounded on a CPU.

:func:`imagenette` decodes a split once (shorter side resized to ``size`` with
antialiasing, centre square kept: the validation geometry of torchvision's
classifiers, at a smaller scale), keeps it as uint8 and caches it on disk in
:func:`zfcourse.infra.cache.cache_dir`, keyed by the split, the size and the list of
files. The result is a :class:`TensorImages`, which training slices batch by batch
without decoding anything again.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..infra.cache import cache_dir, cached, key
from ..infra.paths import data_dir, imagenette_folder, imagenette_size
from ..infra.progress import tqdm
from .files import read_image
from .normalization import IMAGENET, Normalization

__all__ = ["TensorImages", "imagenette"]


class TensorImages(Dataset):
    """Images held as uint8 ``[N, 3, S, S]`` with labels; items are normalised model input.

    The same interface as :class:`zfcourse.data.synthetic.SyntheticImages` (``images``,
    ``labels``, ``classes``, ``transform_batch``), so :func:`zfcourse.train.train`
    and :func:`zfcourse.topk.top_activations` take either.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str],
                 normalization: Normalization = IMAGENET):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {list(images.shape)}")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.classes = images, labels.long(), list(classes)
        self.normalization = normalization

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform_batch(self.images[i]), int(self.labels[i])

    def transform_batch(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> model input (per-channel mean and standard deviation)."""
        return self.normalization.normalize(images)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> model input."""
        return self.normalization.normalize(x)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> images in [0, 1]."""
        return self.normalization.denormalize(x)

    def __repr__(self) -> str:
        return f"TensorImages(n={len(self)}, size={self.images.shape[-1]}, classes={len(self.classes)})"


def _decode(path: str, size: int) -> torch.Tensor:
    from torchvision.transforms.functional import center_crop, pil_to_tensor, resize
    image = read_image(path, min_size=2 * size)  # JPEG draft decoding: a 320 px picture is read at 1/2 scale
    return center_crop(resize(pil_to_tensor(image), size, antialias=True), size)


def imagenette(split: str = "train", size: int = 64, download: bool = True, progress: bool = True) -> TensorImages:
    """Imagenette's ``train`` or ``val`` split as :class:`TensorImages` of ``size`` pixels.

    The pictures come from torchvision's Imagenette in the imagenet world's data
    folder and size (``ZFCOURSE_DATA``, ``ZFCOURSE_IMAGENETTE``); they are
    downloaded (and verified) first if missing and ``download`` is true. Labels are
    Imagenette's own, 0-9; ``classes`` names them.
    """
    from torchvision.datasets import Imagenette

    if split not in ("train", "val"):
        raise ValueError(f"unknown Imagenette split {split!r}; valid: train, val")
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise ValueError(f"size must be an int of at least 8 pixels, got {size!r}")
    folder = imagenette_folder(split)
    dataset = Imagenette(str(data_dir()), split=split, size=imagenette_size(), download=download and not folder.exists())
    samples = [(str(Path(p).relative_to(folder)), label) for p, label in dataset._samples]
    path = cache_dir() / "imagenette" / f"{split}-{size}-{key(samples=samples)}.pt"

    def build():
        with ThreadPoolExecutor() as pool:  # decoding releases the GIL
            images = list(tqdm(pool.map(lambda s: _decode(str(folder / s[0]), size), samples), total=len(samples),
                               desc=f"decoding Imagenette {split}", disable=not progress, leave=False))
        return {"images": torch.stack(images), "labels": torch.tensor([label for _, label in samples])}

    def validate(obj):
        if obj["images"].shape != (len(samples), 3, size, size) or len(obj["labels"]) != len(samples):
            raise ValueError("cached Imagenette tensors do not match the files")

    obj = cached(path, build, validate)
    return TensorImages(obj["images"], obj["labels"], [names[0] for names in dataset.classes])
