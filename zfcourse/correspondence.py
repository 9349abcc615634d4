"""Correspondence analysis: Zeiler & Fergus (2014), Sec. 4.3, Fig. 8 and Table 1.

Does the network find the *same part* in different images, without being told what a
part is? The paper masks the same part of the face (left eye, right eye, nose) in five
dog images and asks whether the masking changes the features *in the same way* in all
of them. For image ``i`` and layer ``l``, with ``x~_i`` the image with the part masked::

    eps_i^l = x_i^l - x~_i^l                       the change of the feature vector
    Delta_l = sum_{i != j} H(sign(eps_i^l), sign(eps_j^l))     H: Hamming distance

A lower ``Delta`` means a more consistent change, so a tighter correspondence between
the parts. The paper compares with masking *random* parts of the objects.

Normalisation. The paper's sum grows with the number of images and the length of the
feature vector, so we report the *mean* over the ordered pairs ``i != j`` of the
*fraction* of the ``D`` features whose signs differ::

    Delta_l = 1 / (N (N - 1)) * sum_{i != j} 1/D * #{d : sign(eps_i[d]) != sign(eps_j[d])}

a number in ``[0, 1]``, comparable across layers, numbers of images and networks (the
paper's Table 1 values, 0.07 to 0.11, are of this size). ``sign`` has three values:
a feature the mask does not change (``eps = 0``, e.g. a unit that stays at zero after
its ReLU, or one whose receptive field misses the mask) has sign 0.

The mask is filled with a colour in model-input space, by default 0.0: the mean colour
of a mean/std-normalised input (see :func:`zfcourse.occluder.fill_value`).

Parts are given per image as boxes ``[N, 4]`` = (top, left, bottom, right), bottom and
right exclusive (as :func:`zfcourse.receptive.patch_box`), or as boolean masks
``[N, H, W]``, so aligned faces with hand-chosen parts and synthetic objects with
known geometry (:func:`part_boxes`) go through the same code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .infra.device import compute_device, placed
from .infra.progress import tqdm
from .models import activations, check_images, layer_index
from .occluder import fill_value

__all__ = ["box_masks", "random_boxes", "part_boxes", "PARTS", "COMPARED", "feature_differences",
           "sign_hamming", "consistency", "correspondence", "PartComparison", "compare_parts"]

PARTS = ("centre", "top", "tip")
COMPARED = PARTS + ("random",)   # the parts of the chapter's Table 1, random parts last
# In units of the dtype's machine epsilon: a few hundred ulps of the layer's largest
# feature covers the reordering of sums over thousands of terms, and is still far below
# any change a mask makes (1e-5 of the scale in float32, 3e-14 in float64).
ROUNDING = 128


def box_masks(boxes: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Boolean masks ``[N, H, W]``, True inside each box (top, left, bottom, right; exclusive)."""
    H, W = (size, size) if isinstance(size, int) else size
    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    hh, ww = torch.arange(H, device=boxes.device), torch.arange(W, device=boxes.device)
    rows = (hh >= boxes[:, 0:1]) & (hh < boxes[:, 2:3])
    cols = (ww >= boxes[:, 1:2]) & (ww < boxes[:, 3:4])
    return rows[:, :, None] & cols[:, None, :]


def _as_masks(parts: Tensor, shape: tuple[int, int]) -> Tensor:
    try:
        parts = torch.as_tensor(parts)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"parts must be boxes [N, 4] (top, left, bottom, right) or masks "
                        f"[N, {shape[0]}, {shape[1]}]; got {type(parts).__name__}") from None
    if parts.dim() == 2 and parts.shape[1] == 4:
        return box_masks(parts, shape)
    if parts.dim() == 3 and tuple(parts.shape[1:]) == tuple(shape):
        return parts.bool()
    raise ValueError(f"parts must be boxes [N, 4] (top, left, bottom, right) or masks [N, {shape[0]}, {shape[1]}]; "
                     f"got shape {list(parts.shape)}")


def _box_around(cy: Tensor, cx: Tensor, size: int, image_size: tuple[int, int]) -> Tensor:
    """Boxes of ``size`` centred (as near as the image allows) at ``(cy, cx)``."""
    top = (cy.round().long() - size // 2).clamp(0, image_size[0] - size)
    left = (cx.round().long() - size // 2).clamp(0, image_size[1] - size)
    return torch.stack([top, left, top + size, left + size], dim=1)


def part_boxes(masks: Tensor, part: str, size: int, generator: torch.Generator | None = None) -> Tensor:
    """Square boxes ``[N, 4]`` of side ``size`` on a part of each object, found from its mask.

    ``masks`` ``[N, H, W]`` (object coverage, any scale; above half the maximum is inside).
    ``part``: ``"centre"``: centred at the object's centroid; ``"top"``: on the object's
    highest point (the middle of its top row of pixels): for the synthetic shapes the same
    part in every image of a class (the uppermost corner of a square, vertex of a triangle,
    arm end of a cross, the top of a disc's or ring's rim), at the same place on the object,
    as the paper's left eyes are on frontal faces; ``"tip"``: on the object pixel farthest
    from the centroid (a corner, a vertex or an arm end too, but pointing anywhere);
    ``"random"``: a random part of the object, drawn with ``generator``
    (:func:`random_boxes` with ``region=masks``). A top or tip box has its centre moved
    ``size / 2`` towards the centroid, so that it covers the object rather than the
    background around it. Boxes are moved inside the image where they would leave it.
    """
    if part not in COMPARED:
        raise ValueError(f"unknown part {part!r}; valid: {', '.join(COMPARED)}")
    if part == "random":
        masks = torch.as_tensor(masks)
        return random_boxes(size, len(masks), tuple(masks.shape[-2:]), region=masks, generator=generator)
    inside = _inside(masks)
    H, W = inside.shape[1:]
    hh, ww = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    area = inside.sum((1, 2)).clamp_min(1)
    cy, cx = (inside * hh).sum((1, 2)) / area, (inside * ww).sum((1, 2)) / area
    if part == "tip":
        dist = torch.where(inside, (hh - cy[:, None, None]) ** 2 + (ww - cx[:, None, None]) ** 2, -1.0)
        far = dist.flatten(1).argmax(1)
        ty, tx = (far // W).float(), (far % W).float()
    if part == "top":
        ty = inside.any(2).float().argmax(1)                       # the first row with object
        row = inside[torch.arange(len(inside)), ty.long()].float()
        ty, tx = ty.float(), (row * ww[0]).sum(1) / row.sum(1)
    if part in ("tip", "top"):
        inward = (size / 2 / torch.hypot(cy - ty, cx - tx).clamp_min(1e-6)).clamp(max=1)
        cy, cx = ty + inward * (cy - ty), tx + inward * (cx - tx)
    return _box_around(cy, cx, size, (H, W))


def _inside(masks: Tensor) -> Tensor:
    masks = torch.as_tensor(masks).float()
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {list(masks.shape)}")
    peak = masks.flatten(1).amax(1).clamp_min(1e-12)
    inside = masks > peak[:, None, None] / 2
    if not inside.flatten(1).any(1).all():
        raise ValueError("every mask must cover some pixels")
    return inside


def random_boxes(size: int, n: int, image_size: int | tuple[int, int], region: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
    """``n`` square boxes of side ``size`` at random places: the random parts of Table 1.

    With ``region`` (masks ``[n, H, W]``, e.g. the objects) each box masks a random part *of
    the object*: it is centred on a pixel drawn uniformly from those whose box lies wholly
    inside the region (from the whole region where no box fits). Without, boxes lie anywhere
    in the image. Boxes are moved inside the image where they would leave it.
    """
    H, W = (image_size, image_size) if isinstance(image_size, int) else image_size
    if not 1 <= size <= min(H, W):
        raise ValueError(f"size must be in 1..{min(H, W)}, got {size}")
    if region is None:
        cy = torch.randint(0, H - size + 1, (n,), generator=generator) + size // 2
        cx = torch.randint(0, W - size + 1, (n,), generator=generator) + size // 2
    else:
        inside = _inside(region)
        if len(inside) != n or tuple(inside.shape[1:]) != (H, W):
            raise ValueError(f"region must be [{n}, {H}, {W}], got {list(inside.shape)}")
        # a box centred at p lies inside the region iff the region contains the box around p
        off = size // 2
        outside = F.max_pool2d(F.pad((~inside).float()[:, None], (off, size - 1 - off, off, size - 1 - off), value=1.0),
                               size, stride=1)[:, 0]
        fits = outside == 0
        centres = torch.where(fits.flatten(1).any(1, keepdim=True), fits.flatten(1), inside.flatten(1))
        pick = torch.multinomial(centres.float(), 1, generator=generator)[:, 0]
        cy, cx = pick // W, pick % W
    return _box_around(cy.float(), cx.float(), size, (H, W))


def feature_differences(model: nn.Module, images: Tensor, parts: Tensor, layers: str | list[str], *,
                        fill=0.0, batch_size: int = 64, device: str | torch.device | None = None) -> dict[str, Tensor]:
    """``eps_i^l = x_i^l - x~_i^l`` for each image and layer: ``{layer: [N, D]}`` (on the CPU).

    ``parts``: boxes ``[N, 4]`` or masks ``[N, H, W]`` (what to mask in each image); ``fill``:
    the mask's colour in model-input space (a number, one per channel, or a World). A
    feature the mask cannot reach gets ``eps = 0`` exactly: the original and the masked
    image go through the network in the same batch, but a CPU or GPU kernel may still sum
    two rows of one batch in different orders, so a difference within rounding of the
    layer's scale (:data:`ROUNDING` times the image's largest feature of that layer, in
    either copy) counts as no change, rather than as a change of random sign. Runs on
    ``device`` (default: the model's, or CUDA when present), in eval mode; the model is put
    back as it was.
    """

    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers must name at least one layer, e.g. ['conv5', 'fc7']")
    check_images(model, images, max(layers, key=lambda name: layer_index(model, name)))
    masks = _as_masks(parts, images.shape[-2:])
    if len(masks) != len(images):
        raise ValueError(f"one part per image: {len(images)} images, {len(masks)} parts")
    device = torch.device(device) if device is not None else compute_device(model)
    out: dict[str, list[Tensor]] = {layer: [] for layer in layers}
    with placed(model, device), torch.no_grad():
        fill = fill_value(fill, images.shape[1], device, images.dtype)
        for x, m in zip(images.split(batch_size), masks.split(batch_size)):
            x, m = x.to(device), m.to(device)
            acts = activations(model, torch.cat([x, torch.where(m[:, None], fill, x)]), layers)
            for layer in layers:
                a = acts[layer].flatten(1)
                out[layer].append(_beyond_rounding(a[: len(x)], a[len(x):]).cpu())
    return {layer: torch.cat(chunks) for layer, chunks in out.items()}


def _beyond_rounding(original: Tensor, masked: Tensor) -> Tensor:
    eps = original - masked
    scale = torch.maximum(original.abs().amax(1, keepdim=True), masked.abs().amax(1, keepdim=True))
    rounding = ROUNDING * torch.finfo(eps.dtype).eps * scale
    return torch.where(eps.abs() <= rounding, torch.zeros_like(eps), eps)


def sign_hamming(eps: Tensor) -> Tensor:
    """``[N, N]``: the fraction of features whose change has a different sign in images i and j."""
    s = torch.sign(torch.as_tensor(eps).flatten(1))
    # Three-valued signs: count disagreements per value, in matrix products rather than N^2 D memory.
    onehot = torch.stack([s == v for v in (-1, 0, 1)]).float()                 # [3, N, D]
    agree = torch.einsum("vnd,vmd->nm", onehot, onehot)
    return 1 - agree / s.shape[1]


def consistency(eps: Tensor) -> float:
    """``Delta``: the mean of :func:`sign_hamming` over the pairs ``i != j`` (lower: more consistent)."""
    n = len(eps)
    if n < 2:
        raise ValueError(f"consistency needs at least two images, got {n}")
    return float(sign_hamming(eps).sum() / (n * (n - 1)))


def correspondence(model: nn.Module, images: Tensor, parts: Tensor, layers=("pool5", "fc7"), *,
                   fill=0.0, batch_size: int = 64, device: str | torch.device | None = None) -> dict[str, float]:
    """``{layer: Delta}`` for masking ``parts`` of ``images`` (see the module doc).

    The paper uses layers 5 and 7; in our names ``pool5`` (the last convolutional
    features, the input of the dense layers) and ``fc7``.
    """
    eps = feature_differences(model, images, parts, list(layers), fill=fill, batch_size=batch_size, device=device)
    return {layer: consistency(e) for layer, e in eps.items()}


@dataclass(repr=False)
class PartComparison:
    """The results of :func:`compare_parts`, one entry per set of images.

    ``delta[part][layer]`` ``[S]``: ``Delta`` of each set for masking that part;
    ``on_object[part]`` ``[S]``: the mean share of each set's boxes on the object.
    """
    delta: dict[str, dict[str, Tensor]]
    on_object: dict[str, Tensor]
    size: int

    @property
    def parts(self) -> list[str]:
        return list(self.delta)

    @property
    def layers(self) -> list[str]:
        return list(next(iter(self.delta.values())))

    def z(self, part: str, layer: str, baseline: str = "random") -> float:
        """How much lower ``part``'s ``Delta`` is than ``baseline``'s, in standard errors of
        the paired difference (the same sets of images; positive: ``part`` more consistent)."""
        diff = self.delta[baseline][layer] - self.delta[part][layer]
        return float(diff.mean() / (diff.std() / len(diff) ** 0.5 + 1e-12))

    def verdict(self, part: str, layer: str, baseline: str = "random", threshold: float = 2.0) -> str:
        """``"more consistent than"``, ``"less consistent than"`` or ``"about as consistent
        as"`` ``baseline``, by whether :meth:`z` is beyond ``threshold`` either way."""
        z = self.z(part, layer, baseline)
        if z > threshold:
            return "more consistent than"
        return "less consistent than" if z < -threshold else "about as consistent as"

    def __repr__(self) -> str:
        return f"PartComparison(sets={len(self.on_object[self.parts[0]])}, parts={self.parts}, layers={self.layers})"


def compare_parts(model: nn.Module, images: Tensor, region: Tensor, sets, size: int, parts=COMPARED,
                  layers=("pool5", "fc7"), *, fill=0.0, generator: torch.Generator | None = None,
                  batch_size: int = 64, device: str | torch.device | None = None,
                  progress: bool = False) -> PartComparison:
    """Table 1 over many sets of images: ``Delta`` for masking each of ``parts`` in each set.

    ``images`` ``[N, C, H, W]`` and ``region`` ``[N, H, W]`` (each image's object) hold
    all images; ``sets`` is a list of index tensors into them (the paper: five images of
    one class). For each set, in order, and each part, in order, the boxes of side
    ``size`` come from :func:`part_boxes` (``"random"`` ones drawn with ``generator``),
    and :func:`correspondence` gives ``Delta`` at ``layers``.
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    delta = {p: {layer: [] for layer in layers} for p in parts}
    on_object = {p: [] for p in parts}
    for s in tqdm(sets, desc="correspondence", disable=not progress):
        for part in parts:
            boxes = part_boxes(region[s], part, size, generator=generator)
            scores = correspondence(model, images[s], boxes, layers, fill=fill, batch_size=batch_size,
                                    device=device)
            for layer, d in scores.items():
                delta[part][layer].append(d)
            covered = (box_masks(boxes, tuple(region.shape[-2:])) & _inside(region[s])).sum((1, 2))
            on_object[part].append(float(covered.float().mean()) / size ** 2)
    return PartComparison(delta={p: {layer: torch.tensor(v) for layer, v in d.items()} for p, d in delta.items()},
                          on_object={p: torch.tensor(v, dtype=torch.float64) for p, v in on_object.items()},
                          size=size)
