"""Feature invariance: Zeiler & Fergus (2014), Sec. 4 (paragraph "Feature Invariance") and Fig. 5.

How much do the features move when the image is translated, scaled or rotated? For an
image ``x``, a transformation ``T_v`` with parameter ``v`` and a layer ``l``::

    distance_l(v)  = || f_l(T_v x) - f_l(x) ||_2     the whole layer as one vector
    probability(v) = softmax(f(T_v x))[target]

Fig. 5 plots both against ``v`` for five images, for layers 1 and 7. The paper reads off
that small transformations change the first layer's features a lot and the top layer's
much less, the top layer "quasi-linearly" for translation and scaling, and that the output
is stable to translation and scaling but, in general, not to rotation (except for
rotationally symmetric objects). ``relative=True`` divides by ``|| f_l(x) ||`` so that
layers of very different scales can share an axis.

Transformations (:data:`TRANSFORMS`), all about the image centre, bilinear:

* ``translate_y`` / ``translate_x``: the content moves ``v`` pixels down / right;
* ``scale``: the content is magnified ``v`` times (``v > 1`` zooms in);
* ``rotate``: the content turns ``v`` degrees counter-clockwise as displayed.

Pixels that come from outside the image take ``fill``, a colour in model-input space
(default 0.0, the mean colour of a mean/std-normalised input; see
:func:`zfcourse.occlusion.fill_value`). At the identity (0, or 1 for ``scale``) the image
is returned unchanged.

All transformed copies of all images go through the network ``batch_size`` at a time, on
the model's device (or CUDA when present and the model is on the CPU); only the distances
and probabilities are kept, so memory does not grow with the number of values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .infra.checks import count
from .infra.device import compute_device, placed
from .infra.progress import tqdm
from .models import check_images, layer_index, sequence
from .occluder import fill_value, per_image

__all__ = ["TRANSFORMS", "IDENTITY", "transform", "Invariance", "invariance_curves"]

TRANSFORMS = ("translate_y", "translate_x", "scale", "rotate")
IDENTITY = {"translate_y": 0.0, "translate_x": 0.0, "scale": 1.0, "rotate": 0.0}


def _theta(kind: str, values: Tensor, H: int, W: int) -> Tensor:
    """``[B, 2, 3]`` affine maps from output to input in ``affine_grid``'s normalised coordinates."""
    B = len(values)
    theta = torch.zeros(B, 2, 3, dtype=values.dtype, device=values.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    if kind == "translate_y":
        theta[:, 1, 2] = -2 * values / H
    elif kind == "translate_x":
        theta[:, 0, 2] = -2 * values / W
    elif kind == "scale":
        if (values <= 0).any():
            raise ValueError(f"scale factors must be positive, got {values.min().item()}")
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / values
    elif kind == "rotate":
        a = values * math.pi / 180
        # in pixels (y down) the output pixel p samples the input at R(a) p; in normalised
        # coordinates x is divided by W/2 and y by H/2
        theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(a)
        theta[:, 0, 1] = -torch.sin(a) * H / W
        theta[:, 1, 0] = torch.sin(a) * W / H
    else:
        raise ValueError(f"unknown transformation {kind!r}; valid: {', '.join(TRANSFORMS)}")
    return theta


def transform(images: Tensor, kind: str, value, fill=0.0) -> Tensor:
    """``images`` [N, C, H, W] transformed: one value for all, or one per image (see the module doc)."""
    values = torch.as_tensor(value, dtype=images.dtype, device=images.device).reshape(-1).expand(len(images))
    theta = _theta(kind, values, *images.shape[-2:])
    fill = fill_value(fill, images.shape[1], images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    identity = values == IDENTITY[kind]
    return torch.where(identity[:, None, None, None], images, out)


@dataclass(repr=False)
class Invariance:
    """Curves of :func:`invariance_curves`: ``distance[layer]`` and ``probability`` are ``[V, N]``,
    entry ``[v, n]`` for image ``n`` transformed by ``values[v]``; ``norm[layer]`` ``[N]`` is
    ``|| f_l(x) ||`` of the untransformed image."""
    kind: str
    values: Tensor
    distance: dict[str, Tensor]
    norm: dict[str, Tensor]
    probability: Tensor
    target: Tensor

    @property
    def layers(self) -> list[str]:
        return list(self.distance)

    def relative(self, layer: str) -> Tensor:
        """``distance[layer]`` divided by the untransformed feature's norm, ``[V, N]``."""
        return self.distance[layer] / self.norm[layer].clamp_min(1e-12)

    @property
    def neighbours(self) -> list[int]:
        """The indices of the values just before and after the identity (0, or 1 for
        ``scale``) in ``values``: the smallest changes tried (one at an end)."""
        at = (self.values == IDENTITY[self.kind]).nonzero().flatten()
        if not len(at):
            raise ValueError(f"the values of {self.kind!r} do not include the identity, "
                             f"{IDENTITY[self.kind]:g}")
        i = int(at[0])
        return [j for j in (i - 1, i + 1) if 0 <= j < len(self.values)]

    def smallest_change(self) -> dict[str, float]:
        """``{layer: how far the smallest change moves it}``: :meth:`relative` at the
        :attr:`neighbours` of the identity, averaged over them and the images."""
        near = self.neighbours
        return {layer: float(self.relative(layer)[near].mean()) for layer in self.layers}

    def __repr__(self) -> str:
        V, N = self.probability.shape
        return f"Invariance(kind={self.kind!r}, values={V}, images={N}, layers={self.layers})"


def invariance_curves(model: nn.Module, images: Tensor, target=None, kind: str = "translate_y", values=None,
                      layers=("conv1", "pool5", "fc7"), *, fill=0.0, batch_size: int = 128,
                      device: str | torch.device | None = None, progress: bool = False) -> Invariance:
    """Feature distances and true-class probability as the images are transformed (Fig. 5).

    Args:
        model: a classifier made of a sequence of modules whose output is class scores.
        images: ``[N, C, H, W]`` in model-input space.
        target: the class whose probability is tracked: an int, a LongTensor ``[N]`` (e.g. the
            true labels), or None (each untransformed image's predicted class).
        kind: one of :data:`TRANSFORMS`.
        values: the transformation parameters ``[V]`` (pixels, factor or degrees).
        layers: the layers whose feature vectors are compared (the paper: 1 and 7).
        fill: colour of the pixels that come from outside the image (model-input space).
        batch_size: transformed copies per forward pass.
        device: where to compute (see :func:`zfcourse.occlusion.occlusion_map`).
        progress: show a tqdm progress bar.
    """

    check_images(model, images)
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transformation {kind!r}; valid: {', '.join(TRANSFORMS)}")
    if values is None:
        raise ValueError("values: the transformation parameters to try, e.g. torch.arange(-16, 17, 4)")
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers must name at least one layer, e.g. ('conv1', 'fc7')")
    batch_size = count(batch_size, "batch_size")
    device = torch.device(device) if device is not None else compute_device(model)
    modules = sequence(model)
    at = {layer_index(model, layer): layer for layer in layers}
    values = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if len(values) == 0 or not torch.isfinite(values).all():
        raise ValueError(f"values must hold at least one finite transformation parameter, got "
                         f"{values.tolist()}")
    n, V = len(images), len(values)

    def run(x):
        feats = {}
        for i, m in enumerate(modules):
            x = m(x)
            if i in at:
                feats[at[i]] = x.flatten(1)
        return x.softmax(1), feats

    # channels-last convolutions are faster on a CPU
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    with placed(model, device), torch.no_grad():
        x = images.to(device)
        fill = fill_value(fill, x.shape[1], device, x.dtype)
        prob0, ref = run(x.contiguous(memory_format=layout))
        target = prob0.argmax(1) if target is None else per_image(target, n, "target", device)
        dist = {layer: torch.empty(V * n, device=device, dtype=x.dtype) for layer in layers}
        prob = torch.empty(V * n, device=device, dtype=x.dtype)
        for start in tqdm(range(0, V * n, batch_size), desc=f"invariance ({kind})", disable=not progress):
            k = torch.arange(start, min(start + batch_size, V * n), device=device)
            v, image = k // n, k % n
            p, feats = run(transform(x[image], kind, values.to(device)[v], fill).contiguous(memory_format=layout))
            prob[k] = p.gather(1, target[image, None])[:, 0]
            for layer in layers:
                dist[layer][k] = (feats[layer] - ref[layer][image]).norm(dim=1)

    return Invariance(kind=kind, values=values, probability=prob.view(V, n).cpu(), target=target.cpu(),
                      distance={layer: d.view(V, n).cpu() for layer, d in dist.items()},
                      norm={layer: ref[layer].norm(dim=1).cpu() for layer in layers})
