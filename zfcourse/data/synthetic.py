"""A procedural image world: textured objects on cluttered backgrounds.

Each image holds one object whose class is a (shape, texture) pair, e.g. a
"striped disc" or a "checked triangle", drawn in a random colour, size, position
and orientation over a smooth colourful background with stray strokes and blobs.
Shapes differ in outline, textures in spatial frequency (fine stripes, medium
checks, coarse dots), so a network must combine edges, colours and frequencies,
as the paper's layers do. The object mask comes with every image, which makes
occlusion (chapter 7) quantitative.

Everything is deterministic: image ``i`` of a split depends only on
``(seed, split, i)``, so two processes, or two machines, draw identical images,
and any image can be rendered on its own. Rendering is vectorised over a batch
in NumPy float32 (several thousand 64x64 images per second on one core).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..infra.checks import count
from .normalization import SYNTHETIC

SHAPES = ("disc", "square", "triangle", "cross", "ring")
TEXTURES = ("stripes", "checks", "dots")
_ADJECTIVE = {"stripes": "striped", "checks": "checked", "dots": "dotted"}
# One texture per shape is held out, so every held-out class is a new combination
# of a shape and a texture the network has seen, each with other partners.
HELDOUT_PAIRS = (("disc", "dots"), ("square", "stripes"), ("triangle", "checks"), ("cross", "dots"), ("ring", "checks"))
TRAIN_PAIRS = tuple((s, t) for s in SHAPES for t in TEXTURES if (s, t) not in HELDOUT_PAIRS)
SPLITS = {"train": 0, "val": 1, "heldout": 2}
# Bumped whenever rendering changes, so that models cached on the old images are retrained.
VERSION = 1
IMAGE_SIZE = 64

# Layout of the per-image random vector; every parameter is a fixed slice, so adding
# one never shifts the others.
_P = dict(cx=0, cy=1, radius=2, angle=3, hue=4, sat=5, val=6, tex_angle=7, period=8, phase=9,
          phase2=10, bg=slice(11, 59), clutter=slice(59, 101), noise_seed=115)
_NP = 116
_N_CLUTTER = 6


def class_name(pair: tuple[str, str]) -> str:
    shape, texture = pair
    return f"{_ADJECTIVE[texture]} {shape}"


def part_labels(classes: list[str], labels) -> dict[str, torch.Tensor]:
    """Each image's texture and shape as group ids, ``{"texture": [N], "shape": [N]}``,
    from class names ``"<texture> <shape>"`` (:func:`class_name`) and labels ``[N]``."""
    labels = torch.as_tensor(labels).long()
    out = {}
    for part, name in enumerate(("texture", "shape")):
        words = [c.split()[part] for c in classes]
        out[name] = torch.tensor([sorted(set(words)).index(w) for w in words])[labels]
    return out


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB; inputs [N], output [N, 3]."""
    k = np.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], axis=1)
    return v[:, None] - (v * s)[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def _shape_sdf(shape: str, u, v, r):
    """Signed distance in pixels, positive inside, of a shape of size r centred at 0."""
    if shape == "disc":
        return r - np.hypot(u, v)
    if shape == "square":
        return 0.8 * r - np.maximum(np.abs(u), np.abs(v))
    if shape == "triangle":  # equilateral, circumradius r: three half-planes
        a = np.pi / 2 + 2 * np.pi * np.arange(3, dtype=np.float32) / 3
        d = np.maximum.reduce([u * np.cos(t) + v * np.sin(t) for t in a])
        return 0.5 * r - d
    if shape == "cross":
        w, l = 0.32 * r, 0.95 * r
        au, av = np.abs(u), np.abs(v)
        return np.maximum(np.minimum(w - au, l - av), np.minimum(w - av, l - au))
    if shape == "ring":
        rho = np.hypot(u, v)
        return np.minimum(r - rho, rho - 0.5 * r)
    raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


def _texture(texture: str, a, b, period, phase, phase2):
    """A pattern in [0, 1] on rotated coordinates (a, b); fine stripes, medium checks, coarse dots."""
    w = 2 * np.pi / period
    if texture == "stripes":
        s = np.sin(a * w + phase)
    elif texture == "checks":
        s = np.sin(a * w + phase) * np.sin(b * w + phase2) * 2
    elif texture == "dots":
        s = (np.cos(a * w + phase) + np.cos(b * w + phase2) - 1.0) * 1.5
    else:
        raise ValueError(f"unknown texture {texture!r}; valid: {', '.join(TEXTURES)}")
    return np.clip(0.5 + 1.5 * s, 0, 1)


_PERIODS = {"stripes": (3.0, 4.5), "checks": (7.0, 10.0), "dots": (9.0, 13.0)}


@functools.lru_cache(maxsize=4)
def _noise_bank(size: int, tiles: int = 64) -> np.ndarray:
    return np.random.default_rng(12345).standard_normal((tiles, size, size, 3), dtype=np.float32)


def _params(seed: int, split: str, indices: np.ndarray) -> np.ndarray:
    return np.stack([np.random.default_rng([seed, SPLITS[split], int(i)]).random(_NP, dtype=np.float32)
                     for i in indices])


def render(indices, split: str = "train", seed: int = 0, size: int = IMAGE_SIZE, chunk: int = 64):
    """Render images ``indices`` of a split.

    Returns ``(images, masks, labels)``: uint8 ``[N, 3, size, size]``, uint8
    ``[N, size, size]`` (object coverage, 255 = inside), int64 ``[N]`` (index into
    the split's classes; classes cycle with the index, so every split is balanced).
    Work is done ``chunk`` images at a time so that the arrays stay in cache.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    images = np.empty((len(indices), size, size, 3), np.uint8)
    masks = np.empty((len(indices), size, size), np.uint8)
    for i in range(0, len(indices), chunk):
        images[i:i + chunk], masks[i:i + chunk] = _render(indices[i:i + chunk], split, seed, size)
    pairs = HELDOUT_PAIRS if split == "heldout" else TRAIN_PAIRS
    labels = indices % len(pairs)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(masks), torch.from_numpy(labels)


def _render(indices: np.ndarray, split: str, seed: int, size: int):
    """Channel-last float32 compositing of one chunk; returns uint8 images and masks."""
    pairs = HELDOUT_PAIRS if split == "heldout" else TRAIN_PAIRS
    p = _params(seed, split, indices)
    s = np.float32(size / IMAGE_SIZE)  # parameters are in 64-px units
    img = _background(p, size)
    _clutter(img, p, s)
    mask = _object(img, p, indices % len(pairs), pairs, s)
    # Sensor noise from a fixed bank of tiles, picked per image: as deterministic as
    # per-image noise and an order of magnitude cheaper to draw.
    bank = _noise_bank(size)
    img += 0.03 * bank[(p[:, _P["noise_seed"]] * len(bank)).astype(int)]
    images = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    masks = np.clip(mask * 255 + 0.5, 0, 255).astype(np.uint8)
    return images, masks


def _background(p: np.ndarray, size: int) -> np.ndarray:
    """A smooth colour field (4x4 grid per channel, upsampled), muted: ``[N, size, size, 3]``."""
    grid = torch.from_numpy(p[:, _P["bg"]].reshape(len(p), 3, 4, 4))
    img = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
    return (0.15 + 0.6 * img).permute(0, 2, 3, 1).contiguous().numpy()


def _clutter(img: np.ndarray, p: np.ndarray, s: np.float32) -> None:
    """Short strokes in random colours, drawn into ``img`` (behind the object). Each is drawn
    in its own small window rather than over the whole image."""
    n, size = len(img), img.shape[1]
    c = p[:, _P["clutter"]].reshape(n, _N_CLUTTER, 7)
    win = int(np.ceil(20 * s)) | 1
    local = np.arange(win, dtype=np.float32) - win // 2
    rows = np.arange(n)[:, None, None]
    colour = _hsv_to_rgb(c[..., 5].ravel(), np.full(n * _N_CLUTTER, 0.7, np.float32),
                         0.3 + 0.7 * c[..., 6].ravel())
    colour = colour.reshape(n, _N_CLUTTER, 3).astype(np.float32)
    for k in range(_N_CLUTTER):
        top, left = (c[:, k, :2] * (size - win + 1)).astype(int).T
        ang, half = c[:, k, 2:3, None] * np.pi, (2 + 7 * c[:, k, 3:4, None]) * s
        width = (0.6 + 1.6 * c[:, k, 4:5, None]) * s
        cos, sin = np.cos(ang), np.sin(ang)
        along = np.clip(local[None, None, :] * cos + local[None, :, None] * sin, -half, half)
        dist = np.hypot(local[None, None, :] - along * cos, local[None, :, None] - along * sin)
        alpha = np.clip(width - dist + 0.5, 0, 1)[..., None]  # [N, win, win, 1]
        ys = top[:, None, None] + np.arange(win)[None, :, None]
        xs = left[:, None, None] + np.arange(win)[None, None, :]
        patch = img[rows, ys, xs]
        img[rows, ys, xs] = patch + (colour[:, None, None, k] - patch) * alpha


def _object(img: np.ndarray, p: np.ndarray, labels: np.ndarray, pairs, s: np.float32) -> np.ndarray:
    """The object, composited into ``img``: its shape's soft mask filled with a two-tone
    texture, in the colours of its parameters. Returns the mask ``[N, size, size]``."""
    n, size = len(img), img.shape[1]
    radius = (12 + 10 * p[:, _P["radius"]]) * s
    margin = radius + 2 * s
    cx = margin + p[:, _P["cx"]] * (size - 2 * margin)
    cy = margin + p[:, _P["cy"]] * (size - 2 * margin)
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float32) + 0.5,
                         np.arange(size, dtype=np.float32) + 0.5, indexing="ij")
    mask = np.empty((n, size, size), np.float32)
    pattern = np.empty((n, size, size), np.float32)
    for label, (shape, texture) in enumerate(pairs):
        sel = np.flatnonzero(labels == label)
        if not len(sel):
            continue
        q = p[sel]
        ox = xx[None] - cx[sel, None, None]
        oy = yy[None] - cy[sel, None, None]
        t = (q[:, _P["angle"]] * 2 * np.pi)[:, None, None]
        u, v = ox * np.cos(t) + oy * np.sin(t), oy * np.cos(t) - ox * np.sin(t)
        mask[sel] = np.clip(_shape_sdf(shape, u, v, radius[sel, None, None]) + 0.5, 0, 1)
        t = (q[:, _P["tex_angle"]] * np.pi)[:, None, None]
        lo, hi = _PERIODS[texture]
        period = ((lo + (hi - lo) * q[:, _P["period"]]) * s)[:, None, None]
        pattern[sel] = _texture(texture, ox * np.cos(t) + oy * np.sin(t), oy * np.cos(t) - ox * np.sin(t),
                                period, (q[:, _P["phase"]] * 2 * np.pi)[:, None, None],
                                (q[:, _P["phase2"]] * 2 * np.pi)[:, None, None])
    light = _hsv_to_rgb(p[:, _P["hue"]], 0.6 + 0.4 * p[:, _P["sat"]],
                        0.75 + 0.25 * p[:, _P["val"]]).astype(np.float32)
    dark = 0.2 * light
    fill = (light - dark)[:, None, None] * pattern[..., None]
    fill += dark[:, None, None]
    fill -= img
    fill *= mask[..., None]
    img += fill
    return mask


class SyntheticImages(Dataset):
    """``n`` images of one split, rendered once and kept as uint8.

    Items are ``(image, label)`` with the image normalised as the world's models
    expect (see :func:`normalize`); ``.images`` (uint8), ``.masks`` and
    ``.labels`` hold the whole split, ``.classes`` the class names.
    """

    def __init__(self, split: str = "train", n: int = 1000, seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        n, seed = count(n, "n", minimum=0), count(seed, "seed", minimum=0)
        self.split, self.seed = split, seed
        self.images, self.masks, self.labels = render(range(n), split, seed)
        pairs = HELDOUT_PAIRS if split == "heldout" else TRAIN_PAIRS
        self.classes = [class_name(pr) for pr in pairs]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return normalize(self.images[i]), int(self.labels[i])

    @staticmethod
    def transform_batch(images: torch.Tensor) -> torch.Tensor:
        """uint8 images [N, 3, H, W] -> model input, the batched form of ``__getitem__``."""
        return normalize(images)

    normalize = staticmethod(SYNTHETIC.normalize)
    denormalize = staticmethod(SYNTHETIC.denormalize)

    def __repr__(self) -> str:
        return f"SyntheticImages(split={self.split!r}, n={len(self)}, seed={self.seed}, classes={len(self.classes)})"


normalize = SYNTHETIC.normalize      # uint8 (or [0, 1] float) images -> the models' input scale
denormalize = SYNTHETIC.denormalize
