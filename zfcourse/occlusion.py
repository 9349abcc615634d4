"""Occlusion sensitivity: Zeiler & Fergus (2014), Sec. 4.2 and Fig. 7.

Does the classifier look at the object, or at its surroundings? The paper covers
part of the image with a grey square, the *occluder*, slides it over the image and
records what the network says at each position. For an image ``x`` [C, H, W], a
``window`` of ``(a, b)`` pixels and occluder positions ``(r_i, c_j)`` (top-left
corners ``0, stride, 2 * stride, ...``, the square always inside the image)::

    x~_ij          = x with x[:, r_i : r_i + a, c_j : c_j + b] = fill
    probability_ij = softmax(f(x~_ij))[target]            Fig. 7 (d)
    predicted_ij   = argmax_k f(x~_ij)[k]                   Fig. 7 (e)
    activation_ij  = sum_{h,w} A_layer(x~_ij)[channel, h, w]   Fig. 7 (b)

``f`` is the model (its output: class scores before the softmax), ``A_layer`` one of
its named layers. The paper's Fig. 7 (b) takes the top convolutional layer and its
strongest feature map in the unoccluded image; ``channel=None`` does the same: per
image, the channel with the largest activation (at any position) in ``layer``.

The grey square. The paper fills it with grey; we fill it with a colour given in
*model-input* space. ``fill=0.0`` (the default) is the colour the input normalisation
subtracts: for a per-channel mean/std normalisation such as ImageNet's, exactly the
dataset's mean colour, so the occluder adds no signal of its own. ``fill=world`` uses
:func:`mean_colour` of a :class:`zfcourse.World`; a number or one value per channel
is used as given.

Speed. The occluded copies of all images are made on the fly and go through the network
``batch_size`` at a time (copies of different images share a batch), on the model's
device, or CUDA when present and the model is on the CPU. Memory is bounded by
``batch_size`` copies, their activations and the unoccluded maps of a group of images,
whatever the number of positions. The occluder changes only a window of each early
feature map, so there only that window is recomputed (:mod:`zfcourse.local_pass`); the maps are those of
the plain forward pass up to float rounding (``local=False`` runs the plain pass).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .infra.checks import count
from .infra.device import compute_device, placed
from .infra.progress import tqdm
from .local_pass import LocalPass, apply, run
from .models import check_images, layer_index, sequence
from .occluder import fill_value, mean_colour, occluded, per_image

__all__ = ["Occlusion", "occlusion_map", "occluded", "mean_colour", "fill_value", "peak_overlap",
           "drop_by_overlap", "OVERLAP_BINS", "OVERLAP_LABELS"]


@dataclass(repr=False)
class Occlusion:
    """The maps of :func:`occlusion_map`, one ``[rows, cols]`` grid per image.

    ``probability``, ``predicted`` and ``activation`` are ``[N, len(rows), len(cols)]``;
    entry ``[n, i, j]`` is for image ``n`` with the occluder's top-left corner at
    ``(rows[i], cols[j])``. The ``baseline_*`` fields are the unoccluded image's values.
    ``activation`` and its companions are None when no ``layer`` was asked for.
    """
    probability: Tensor
    predicted: Tensor
    activation: Tensor | None
    rows: Tensor
    cols: Tensor
    window: tuple[int, int]
    image_size: tuple[int, int]
    target: Tensor
    baseline_probability: Tensor
    baseline_predicted: Tensor
    layer: str | None = None
    channel: Tensor | None = None
    baseline_activation: Tensor | None = None

    def __repr__(self) -> str:
        n, gh, gw = self.probability.shape
        extra = f", layer={self.layer!r}" if self.layer else ""
        return f"Occlusion(images={n}, grid={gh}x{gw}, window={self.window}{extra})"

    @property
    def drop(self) -> Tensor:
        """How much the occluder lowers the target's probability, ``[N, rows, cols]``."""
        return self.baseline_probability[:, None, None] - self.probability

    @property
    def centers(self) -> tuple[Tensor, Tensor]:
        """Pixel coordinates of the occluder's centres: ``(rows [gh], cols [gw])``."""
        return self.rows + self.window[0] / 2, self.cols + self.window[1] / 2

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``imshow(grid, extent=...)`` draws each grid cell centred on its occluder's centre,
        over an image shown with ``imshow(image)`` (pixel ``(h, w)`` spans ``w-0.5 .. w+0.5``)."""
        ch, cw = self.centers
        sh, sw = self._step(self.rows, 0), self._step(self.cols, 1)
        return (float(cw[0]) - 0.5 - sw / 2, float(cw[-1]) - 0.5 + sw / 2,
                float(ch[-1]) - 0.5 + sh / 2, float(ch[0]) - 0.5 - sh / 2)

    def overlap(self, masks: Tensor) -> Tensor:
        """The share of each occluder's square that covers an object, ``[N, rows, cols]``.

        ``masks``: ``[N, H, W]`` object masks, any scale (above half an image's maximum is
        object), e.g. the synthetic world's ``val.masks``.
        """
        masks = torch.as_tensor(masks).float()
        inside = masks > masks.flatten(1).amax(1).clamp_min(1e-12)[:, None, None] / 2
        stride = (self._step(self.rows, 0), self._step(self.cols, 1))
        share = F.avg_pool2d(inside[:, None].float(), self.window, stride)[:, 0]
        return share[:, : len(self.rows), : len(self.cols)]

    def to_pixels(self, maps: Tensor) -> Tensor:
        """A grid map ``[N, rows, cols]`` as a pixel map ``[N, H, W]``: each pixel the mean of the
        map over the occluder positions that cover it (0 where none does).

        This is how attribution libraries such as Captum's ``Occlusion`` report occlusion
        (there, of the drop in the model's output): ``to_pixels(result.drop)`` compares with them.
        """
        kernel = maps.new_ones(1, 1, *self.window)
        stride = (self._step(self.rows, 0), self._step(self.cols, 1))
        pad = [0, self.image_size[1] - int(self.cols[-1]) - self.window[1],
               0, self.image_size[0] - int(self.rows[-1]) - self.window[0]]
        total = F.pad(F.conv_transpose2d(maps[:, None].float(), kernel, stride=stride), pad)
        count = F.pad(F.conv_transpose2d(torch.ones_like(maps[:1, None]).float(), kernel, stride=stride), pad)
        return (total / count.clamp_min(1))[:, 0]

    def _step(self, positions: Tensor, axis: int) -> int:
        return int(positions[1] - positions[0]) if len(positions) > 1 else self.window[axis]


# Shares of the occluder on the object: none at all, then quarters (the last edge above 1
# so that a square wholly on the object falls in the last bin).
OVERLAP_BINS = (0.0, 0.01, 0.25, 0.5, 0.75, 1.01)
OVERLAP_LABELS = ("0", "0-25%", "25-50%", "50-75%", "75-100%")


def peak_overlap(result: Occlusion, masks: Tensor) -> Tensor:
    """For each image, the share of the occluder on the object (:meth:`Occlusion.overlap`)
    at the position where it lowers the target's probability most, ``[N]``."""
    on = result.overlap(masks).flatten(1)
    peak = result.drop.flatten(1).argmax(1)
    return on[torch.arange(len(on)), peak]


def drop_by_overlap(result: Occlusion, masks: Tensor, bins=OVERLAP_BINS) -> Tensor:
    """The mean drop of the target's probability over all occluder positions of all images,
    grouped by the share of the occluder on the object: ``[len(bins) - 1]``, entry ``b``
    for shares in ``[bins[b], bins[b + 1])`` (NaN for a bin no position falls in)."""
    on = result.overlap(masks).flatten()
    which = torch.bucketize(on, torch.as_tensor(bins, dtype=on.dtype), right=True) - 1
    drop = result.drop.flatten()
    return torch.stack([drop[which == b].mean() for b in range(len(bins) - 1)])


def _pair(value, name: str) -> tuple[int, int]:
    what = f"{name} must be a positive int or a pair of them (height, width), got {value!r}"
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    if not isinstance(pair, (tuple, list)) or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pair):
        raise TypeError(what)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(what)
    return int(pair[0]), int(pair[1])


def _summed(a: Tensor, channel: Tensor) -> Tensor:
    """Each item's chosen channel summed over positions (a dense unit: its value)."""
    picked = a[torch.arange(len(a), device=a.device), channel]
    return picked.flatten(1).sum(1) if picked.dim() > 1 else picked


def occlusion_map(model: nn.Module, images: Tensor, target=None, window=8, stride=4, *,
                  fill=0.0, layer: str | None = None, channel=None, batch_size: int | None = None,
                  local: bool = True, device: str | torch.device | None = None,
                  progress: bool = False) -> Occlusion:
    """Slide a grey square over each image and record the classifier and one feature map (Fig. 7).

    Args:
        model: a classifier made of a sequence of modules (see :func:`zfcourse.models.sequence`)
            whose output is class scores (logits).
        images: ``[N, C, H, W]`` in model-input space.
        target: the class whose probability is mapped: an int, a LongTensor ``[N]`` (one per
            image, e.g. the true labels), or None (each image's predicted class).
        window: the occluder's side in pixels, int or ``(height, width)``.
        stride: step between occluder positions in pixels, int or ``(height, width)``. The
            positions are ``0, stride, ...`` up to ``H - window``; choose ``(H - window)``
            divisible by ``stride`` to reach the bottom and right edges.
        fill: the occluder's colour in model-input space (see the module doc): a number,
            one per channel, or a World for its mean colour. Default 0.0.
        layer: a layer name (``"conv5"``...) for the summed-activation map, or None for none.
        channel: with ``layer``: an int, a LongTensor ``[N]``, or None for each image's strongest
            channel (largest activation at any position) in the unoccluded image.
        batch_size: occluded copies per forward pass; memory grows with it. Default: about
            16 million input values (1,365 copies at 64 px, 111 at 224 px): large batches make
            the many small convolutions of the windows efficient.
        local: recompute, in the first layers, only the part of each map the occluder
            reaches (see the module doc; the same maps up to float rounding). False: the
            whole network for every copy.
        device: where to compute; default the model's device, or CUDA when present and the
            model is on the CPU. The model is put back where it was, in its train/eval mode.
        progress: show a tqdm progress bar over the occluded copies.
    """

    check_images(model, images)
    window, stride = _pair(window, "window"), _pair(stride, "stride")
    H, W = images.shape[-2:]
    if window[0] > H or window[1] > W:
        raise ValueError(f"the occluder ({window[0]}x{window[1]}) must fit in the image ({H}x{W})")
    batch_size = max(1, 2 ** 24 // images[0].numel()) if batch_size is None else \
        count(batch_size, "batch_size")
    device = torch.device(device) if device is not None else compute_device(model)
    modules = sequence(model)
    at = layer_index(model, layer) if layer is not None else None
    rows = torch.arange(0, H - window[0] + 1, stride[0])
    cols = torch.arange(0, W - window[1] + 1, stride[1])

    with placed(model, device), torch.no_grad():
        x = images.to(device)
        fill = fill_value(fill, x.shape[1], device, x.dtype)
        base = _baseline(modules, x, at, batch_size, target, channel, layer)
        engine = LocalPass(modules, _shapes(modules, x[:1]), rows.tolist(), cols.tolist(), window,
                           enabled=local)
        sweep = _Sweep(modules, engine, x, fill, base, at, len(rows) * len(cols), len(cols))
        prob, pred, act = sweep.run(batch_size, progress)

    def grid(t):
        return None if t is None else t.view(len(x), len(rows), len(cols)).cpu()

    return Occlusion(
        probability=grid(prob), predicted=grid(pred), activation=grid(act), rows=rows, cols=cols,
        window=window, image_size=(H, W), target=base.target.cpu(),
        baseline_probability=base.probability.cpu(), baseline_predicted=base.predicted.cpu(),
        layer=layer, channel=None if base.channel is None else base.channel.cpu(),
        baseline_activation=None if base.activation is None else base.activation.cpu(),
    )


@dataclass
class _Baseline:
    """The unoccluded images: the target's probability, the prediction, and the chosen
    channel's summed activation."""
    target: Tensor
    probability: Tensor
    predicted: Tensor
    channel: Tensor | None
    activation: Tensor | None


def _baseline(modules, x, at, batch_size, target, channel, layer) -> _Baseline:
    """The unoccluded pass; ``target`` and ``channel`` checked, and chosen where None."""
    n = len(x)
    logits, strongest, summed = [], [], []
    for chunk in x.split(batch_size):
        out, kept = run(modules, chunk, at)
        logits.append(out)
        if at is not None:
            strongest.append(kept.flatten(2).amax(2) if kept.dim() == 4 else kept)
            summed.append(kept.flatten(2).sum(2) if kept.dim() == 4 else kept)
    prob = torch.cat(logits).softmax(1)
    predicted = prob.argmax(1)
    target = predicted if target is None else per_image(target, n, "target", x.device)
    if not ((target >= 0) & (target < prob.shape[1])).all():
        raise ValueError(f"target must be a class index in 0..{prob.shape[1] - 1}")
    activation = None
    if at is not None:
        strongest, summed = torch.cat(strongest), torch.cat(summed)      # [N, channels]
        # default: the strongest feature map of the unoccluded image
        channel = per_image(strongest.argmax(1) if channel is None else channel, n, "channel",
                            x.device)
        if not ((channel >= 0) & (channel < summed.shape[1])).all():
            raise ValueError(f"channel must be in 0..{summed.shape[1] - 1} "
                             f"({layer} has {summed.shape[1]} channels)")
        activation = summed[torch.arange(n, device=x.device), channel]
    return _Baseline(target, prob.gather(1, target[:, None])[:, 0], predicted,
                     channel if at is not None else None, activation)


def _shapes(modules, probe: Tensor) -> list[torch.Size]:
    """The input shape of each module, then the last module's output shape."""
    shapes = [probe.shape]
    for m in modules:
        probe = apply(m, probe)
        shapes.append(probe.shape)
    return shapes


class _Sweep:
    """Every occluder position over every image, ``batch_size`` copies per pass.

    The unoccluded maps of ``group`` images are kept at a time; a batch holds each of its
    occluder positions for consecutive images of the group (the segments of
    :class:`zfcourse.local_pass.LocalPass`)."""

    def __init__(self, modules, engine: LocalPass, x, fill, base: _Baseline, at, per, gw):
        self.modules, self.engine, self.x, self.fill = modules, engine, x, fill
        self.base, self.at, self.per, self.gw = base, at, per, gw
        # channels-last convolutions and pooling are about twice as fast on a CPU
        cpu = x.device.type == "cpu"
        self.layout = torch.channels_last if cpu else torch.contiguous_format

    def run(self, batch_size: int, progress: bool):
        n, per, x = len(self.x), self.per, self.x
        self.prob = torch.empty(n, per, device=x.device, dtype=x.dtype)
        self.pred = torch.empty(n, per, dtype=torch.long, device=x.device)
        self.act = None if self.at is None else torch.empty(n, per, device=x.device, dtype=x.dtype)
        group = max(1, min(n, batch_size // 16))
        with tqdm(total=n * per, desc="occlusion", disable=not progress) as bar:
            for first in range(0, n, group):
                g = min(group, n - first)
                bases = self.engine.bases(x[first: first + g])
                for k0 in range(0, g * per, batch_size):
                    k1 = min(k0 + batch_size, g * per)
                    self._batch(bases, first, g, k0, k1)
                    bar.update(k1 - k0)
        return self.prob, self.pred, self.act

    def _batch(self, bases, first: int, g: int, k0: int, k1: int) -> None:
        """Copies ``k0 .. k1`` of the group's (position-major: copy ``k`` is position ``k // g``
        of image ``first + k % g``)."""
        gw, at, end, device = self.gw, self.at, self.engine.end, self.x.device
        segments = [(pos // gw, pos % gw, max(k0 - pos * g, 0), min(k1 - pos * g, g))
                    for pos in range(k0 // g, (k1 - 1) // g + 1)]
        image = torch.cat([torch.arange(i0, i1) for _, _, i0, i1 in segments]).to(device)
        pos = torch.cat([torch.full((i1 - i0,), r * gw + c)
                         for r, c, i0, i1 in segments]).to(device)
        ch = None if at is None else self.base.channel[first + image]
        h, windowed = self.engine.forward(bases, segments, self.fill, self.layout, at, image, ch)
        h = h.contiguous(memory_format=self.layout) if h.dim() == 4 else h
        out, kept = run(self.modules[end:], h, None if at is None or at < end else at - end)
        p = out.softmax(1)
        self.prob[first + image, pos] = p.gather(1, self.base.target[first + image, None])[:, 0]
        self.pred[first + image, pos] = p.argmax(1)
        if at is not None:
            self.act[first + image, pos] = windowed if windowed is not None else _summed(kept, ch)
