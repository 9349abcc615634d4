"""A reader's own pictures as input for the world's model.

Zeiler & Fergus search "the validation data" for the images that excite a
feature map most (Sec. 4, Fig. 2). Nothing in the search is specific to that set:
:func:`load_images` and :class:`ImageFolderDataset` turn any folder or list of
pictures into model input, so that searching one's own photos is one line::

    top = topk.top_activations(world.model, ImageFolderDataset("my_photos"), "conv5")

Files. A folder is searched for files whose suffix is one of
:data:`IMAGE_SUFFIXES` (any case), *not* recursively unless ``recursive=True``;
hidden files (names starting with ``.``, such as macOS's ``._photo.jpg``
companions) are left out. Files are sorted by their path relative to the folder
(code-point order), so the order, and with it every dataset index, is the same on
every run and machine. A file named explicitly is read whatever its suffix. A
missing path is always an error (a typo, not a bad picture).

Pixels. Every picture becomes an 8-bit RGB PIL image before the world's
preprocessing (:func:`read_image`):

* the EXIF orientation is applied, so a photo is upright as a viewer shows it;
* 16-bit greyscale (PNG/TIFF mode ``I;16``, or ``I`` from older Pillow) is scaled
  by 255/65535; Pillow's own conversion clips everything above 255 to white;
* palette images are expanded; greyscale and 1-bit images repeat their grey in
  the three channels; CMYK (e.g. print JPEGs) uses Pillow's formula, without ICC
  colour management, as torchvision's image loaders do;
* transparency (RGBA, LA, palette or colour-key) is composited over a mid-grey
  background, ``(128, 128, 128)`` by default: about the mean colour the worlds
  normalise to zero, so transparent areas give the network as little signal as
  possible;
* large pictures are reduced before anything else is done to them, keeping the
  shorter side at least twice the output size: JPEGs are decoded at 1/2, 1/4 or
  1/8 scale (libjpeg's DCT scaling, so a 50-megapixel photo never exists at
  full size in memory), other formats are box-reduced after decoding. The
  world's preprocessing then resamples (antialiased) as usual; the result
  matches preprocessing the full-size picture up to resampling differences.
  Pillow's decompression-bomb limit stays on: a picture of over about 179
  megapixels is refused as unreadable.

Size. ``size=None`` (or ``world.image_size``) applies the world's own
preprocessing, ``world.preprocess``: exactly what its validation images went
through (the imagenet world: shorter side to 256, centre 224 x 224 crop; the
synthetic world: shorter side to 64, centre crop). Any other ``size`` keeps the
world's normalisation but not its geometry: the shorter side is resized to
``size`` and the centre ``size x size`` square is kept, then ``world.normalize``.
That serves display, and the networks take other sizes too (every network of the
course pools adaptively before its dense layers; see
:func:`zfcourse.models.check_images` for the smallest size each layer needs), though
the minis were trained at 64 x 64 and see best at that scale.

Unreadable files (not an image, empty, truncated, corrupt) raise
:class:`ImageReadError` naming the file, or with ``skip_bad=True`` are skipped
with a warning naming it.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, Union

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, Subset

from ..infra import current
from ..infra.progress import tqdm

__all__ = ["IMAGE_SUFFIXES", "GREY", "ImageReadError", "image_files", "read_image", "load_images",
           "ImageFolderDataset", "labels"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
GREY = (128, 128, 128)
PathLike = Union[str, os.PathLike]
# Pillow reports broken files as any of these (SyntaxError: some broken PNG chunks)
_PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class ImageReadError(OSError):
    """A file that cannot be read as a picture; the message names it."""


def image_files(path_or_paths: PathLike | Iterable[PathLike], recursive: bool = False) -> list[Path]:
    """The picture files a folder, a file or a list of them stands for, in a fixed order.

    Folders are expanded (sorted; recursively only when ``recursive``); files are
    taken as given, in the given order. See the module docstring for the rules.
    """
    items = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = path.rglob("*") if recursive else path.iterdir()
            pictures = [p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                        and not any(part.startswith(".") for part in p.relative_to(path).parts)]
            if not pictures:
                raise ValueError(f"no picture files in folder {str(path)!r}"
                                 f"{' or its subfolders' if recursive else ' (recursive=False)'}; "
                                 f"suffixes looked for: {', '.join(IMAGE_SUFFIXES)}")
            files += sorted(pictures, key=lambda p: p.relative_to(path).as_posix())
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
    if not files:
        raise ValueError("no paths given")
    return files


def read_image(path: PathLike, min_size: int | None = None,
               background: tuple[int, int, int] = GREY) -> Image.Image:
    """One picture as an upright 8-bit RGB PIL image (see the module docstring).

    ``min_size``: reduce large pictures as long as their shorter side stays at
    least this many pixels (``None``: full size). Raises :class:`ImageReadError`
    naming the file when it cannot be read.
    """
    try:
        with Image.open(path) as image:
            if min_size:
                image.draft(None, (min_size, min_size))       # JPEG only; a no-op for other formats
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image, background)
    except _PIL_ERRORS as e:
        raise ImageReadError(f"cannot read {str(path)!r} as a picture: {type(e).__name__}: {e}") from e
    if min_size:
        factor = min(image.size) // min_size
        if factor >= 2:
            image = image.reduce(factor)
    return image


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    if image.mode.startswith("I"):
        # 16-bit data (I;16, I;16B, ... and I, as older Pillow opens 16-bit PNGs): 65535 -> 255
        grey = np.asarray(image, dtype=np.float32) / 257
        image = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.rint(np.asarray(image) * 255), 0, 255).astype(np.uint8))
    if image.mode in ("LA", "La", "PA", "RGBa") or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        image = Image.alpha_composite(Image.new("RGBA", image.size, (*background, 255)), image)
    return image.convert("RGB")


def _transform(world, size: int | None) -> tuple[Callable[[Image.Image], torch.Tensor], int]:
    """The PIL -> model input function for ``size``, and the output size."""
    if size is None or size == world.image_size:
        return world.preprocess, world.image_size
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive int or None (the world's {world.image_size}), got {size!r}")
    from torchvision.transforms.functional import center_crop, pil_to_tensor, resize

    def geometry_then_normalize(image: Image.Image) -> torch.Tensor:
        x = center_crop(resize(pil_to_tensor(image), size, antialias=True), size)
        return world.normalize(x.float() / 255)

    return geometry_then_normalize, size


def _readable(path: Path, decode: bool) -> None:
    """Raise unless ``path``'s header is a picture's and, with ``decode``, its data decodes
    too (JPEGs at an eighth of their size: a truncated file is found at a fraction of the
    cost of a full decode)."""
    with Image.open(path) as image:
        if decode:
            image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()


class ImageFolderDataset(Dataset):
    """Pictures from a folder (or a file, or a list of them) as the world's model input.

    Items are ``(image, index)``: ``image`` a ``[3, size, size]`` tensor prepared as
    :func:`load_images` prepares it, ``index`` the item's own index, so that a
    DataLoader's batches say which files they hold; ``.paths[index]`` is the file.
    Pictures are read when an item is asked for, so a folder of any size costs no
    memory up front. Works wherever the package takes a dataset, e.g.
    ``topk.top_activations(world.model, ImageFolderDataset(folder), "conv5")``.

    ``world``: whose preprocessing to apply (anything with ``.preprocess``,
    ``.image_size`` and ``.normalize``); default ``zfcourse.world()``.

    On construction each file's header is checked (a few bytes per file): files that
    are no picture at all (empty, text, unknown format) raise :class:`ImageReadError`.
    With ``skip_bad=True`` every file is also decoded once, at a reduced size, and any
    that cannot be (a truncated JPEG) is left out with a warning naming it, so that a
    search over the dataset never stops half-way; without it, such a file raises,
    naming it, when its item is read.
    """

    def __init__(self, path_or_paths, world=None, size: int | None = None, recursive: bool = False,
                 skip_bad: bool = False, background: tuple[int, int, int] = GREY):
        world = current.world() if world is None else world
        if not (hasattr(world, "preprocess") and hasattr(world, "image_size")):
            raise TypeError(f"world must be a World (anything with .preprocess, .image_size and "
                            f".normalize, e.g. zfcourse.world()), got {type(world).__name__}")
        self.transform, self.size = _transform(world, size)
        self.background = background
        self.paths = []
        for path in image_files(path_or_paths, recursive):
            try:
                _readable(path, decode=skip_bad)
                self.paths.append(path)
            except _PIL_ERRORS as e:
                error = ImageReadError(f"cannot read {str(path)!r} as a picture: {type(e).__name__}: {e}")
                if not skip_bad:
                    raise error from e
                warnings.warn(f"skipping {error}", stacklevel=2)
        if not self.paths:
            raise ValueError("none of the files could be read as pictures (see the warnings)")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = read_image(self.paths[index], 2 * self.size, self.background)
        return self.transform(image), index

    def __repr__(self) -> str:
        return f"ImageFolderDataset({len(self)} pictures, {self.size}x{self.size})"


def load_images(path_or_paths, size: int | None = None, world=None, skip_bad: bool = False,
                recursive: bool = False, background: tuple[int, int, int] = GREY,
                return_paths: bool = False, progress: bool = True):
    """Pictures as one batch ``[N, 3, size, size]`` of input for the world's model.

    ``path_or_paths``: a folder, a picture file, or a list of them (see the module
    docstring for the order, ``recursive``, ``size`` and how every kind of picture
    is read). ``world``: whose preprocessing to apply (anything with
    ``.preprocess``, ``.image_size`` and ``.normalize``); default
    ``zfcourse.world()``. ``skip_bad=True`` skips unreadable files with a warning
    naming each, instead of raising :class:`ImageReadError`; then
    ``return_paths=True`` (which returns ``(images, paths)``) tells which files the
    rows of the batch come from. For more pictures than fit in memory at once use
    :class:`ImageFolderDataset`, which reads them as they are needed.
    """
    try:
        with warnings.catch_warnings(record=True) as skipped:
            warnings.simplefilter("always")
            dataset = ImageFolderDataset(path_or_paths, world, size, recursive, skip_bad, background)
    finally:
        for warning in skipped:               # re-issued here so that they point at the caller's line
            warnings.warn(warning.message, stacklevel=2)
    images, paths = [], []
    for i in tqdm(range(len(dataset)), desc="pictures", disable=not progress):
        try:
            images.append(dataset[i][0])
        except ImageReadError as e:
            if not skip_bad:
                raise
            warnings.warn(f"skipping {e}", stacklevel=2)
            continue
        paths.append(dataset.paths[i])
    if not images:
        raise ValueError("none of the files could be read as pictures (see the warnings)")
    batch = torch.stack(images)
    return (batch, paths) if return_paths else batch


def labels(dataset, indices=None) -> torch.Tensor:
    """The labels of a dataset's items (all, or those at ``indices``), as a LongTensor.

    Reads them without loading any picture where the dataset keeps them apart:
    ``.labels`` (the synthetic world), ``.targets`` (most torchvision datasets) or
    torchvision Imagenette's list of ``(path, label)`` samples, through a
    ``Subset`` too. Other datasets are asked item by item (``dataset[i][1]``).
    """
    idx = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    if isinstance(dataset, Subset):
        return labels(dataset.dataset, torch.as_tensor(dataset.indices, dtype=torch.long)[idx])
    stored = getattr(dataset, "labels", None)
    if stored is None:
        stored = getattr(dataset, "targets", None)
    if stored is None and hasattr(dataset, "_samples"):
        relabel = getattr(dataset, "target_transform", None) or (lambda y: y)
        stored = [relabel(y) for _, y in dataset._samples]
    if stored is not None:
        return torch.as_tensor(np.asarray(stored), dtype=torch.long)[idx]
    return torch.tensor([int(dataset[i][1]) for i in idx.tolist()], dtype=torch.long)
