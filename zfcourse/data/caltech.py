"""Caltech-101 (Fei-Fei et al. 2004), the transfer task of Sec. 5.2 and Table 4, through torchvision."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from ..infra.paths import data_dir

__all__ = ["ImageFiles", "caltech101"]


class ImageFiles(Dataset):
    """Image files with class labels; every image is opened as RGB (Caltech-101 has greyscale JPEGs)."""

    def __init__(self, root, files: Sequence[str], labels, classes: Sequence[str], transform=None):
        self.root, self.files, self.classes, self.transform = Path(root), list(files), list(classes), transform
        self.labels = torch.as_tensor(labels).long()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.root / self.files[i]) as img:
            img = img.convert("RGB")
        return (self.transform(img) if self.transform is not None else img), int(self.labels[i])

    def __repr__(self) -> str:
        return f"ImageFiles({str(self.root)!r}, images={len(self)}, classes={len(self.classes)})"


def caltech101(root=None, transform=None, download: bool = True) -> ImageFiles:
    """Caltech-101's 101 object classes (without ``BACKGROUND_Google``) through torchvision.

    torchvision downloads the archive once into ``root`` (default
    :func:`zfcourse.infra.paths.data_dir`) and indexes ``caltech101/101_ObjectCategories``;
    the images are read here, as RGB, which also spares torchvision's dependency on scipy.
    """
    from torchvision.datasets import Caltech101

    root = Path(root) if root is not None else data_dir()
    try:
        tv = Caltech101(str(root), download=download)
    except Exception as e:
        raise RuntimeError(
            f"Caltech-101 could not be loaded from {root / 'caltech101'}: {type(e).__name__}: {e}. torchvision "
            "downloads it once (about 140 MB) with an internet connection; set ZFCOURSE_DATA to use another "
            "folder, or ZFCOURSE_WORLD=synthetic") from e
    files = [f"{tv.categories[y]}/image_{i:04d}.jpg" for y, i in zip(tv.y, tv.index)]
    return ImageFiles(Path(tv.root) / "101_ObjectCategories", files, tv.y, tv.categories, transform)
