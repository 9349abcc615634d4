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
feature map, so there only that window is recomputed (``_Local``); the maps are those of
the plain forward pass up to float rounding (``local=False`` runs the plain pass).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .infra.device import compute_device, placed
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
    pair = (value, value) if isinstance(value, numbers.Integral) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def _apply(m: nn.Module, x: Tensor) -> Tensor:
    # never in place: the unoccluded maps are kept and reused
    return torch.relu(x) if isinstance(m, nn.ReLU) else m(x)


def _run(modules: list[nn.Module], x: Tensor, at: int | None) -> tuple[Tensor, Tensor | None]:
    """The output of the modules in turn, and that of module ``at`` (None: not kept)."""
    kept = None
    for i, m in enumerate(modules):
        x = _apply(m, x)
        if i == at:
            kept = x
    return x, kept


def _summed(a: Tensor, channel: Tensor) -> Tensor:
    """Each item's chosen channel summed over positions (a dense unit: its value)."""
    picked = a[torch.arange(len(a), device=a.device), channel]
    return picked.flatten(1).sum(1) if picked.dim() > 1 else picked


_POINTWISE = (nn.ReLU, nn.LocalResponseNorm, nn.Dropout, nn.BatchNorm2d)   # in eval mode


def _sliding(m: nn.Module, axis: int) -> tuple[int, int, int, bool] | None:
    """(kernel, stride, padding, ceil_mode) of a sliding-window module along an axis, None for others."""
    if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str) \
            and tuple(m.dilation) == (1, 1):
        return m.kernel_size[axis], m.stride[axis], m.padding[axis], False
    if isinstance(m, nn.MaxPool2d) and not m.return_indices and m.dilation in (1, (1, 1)):
        k, s, p = (v if isinstance(v, tuple) else (v, v) for v in (m.kernel_size, m.stride or m.kernel_size, m.padding))
        return k[axis], s[axis], p[axis], m.ceil_mode
    return None


class _Local:
    """Recompute, module by module, only the part of each feature map the occluder can reach.

    An occluder over rows ``[r, r + a)`` changes, after a sliding-window module (kernel ``k``,
    stride ``s``, padding ``p``), only the output rows ``o`` whose window meets it:
    ``ceil((r + p - k + 1) / s) <= o <= floor((r + a - 1 + p) / s)``; pointwise modules (ReLU,
    normalisation across channels) change nothing further. So until that span covers a whole
    map, an occluded copy's map is the unoccluded map with one window recomputed, from a crop
    of the unoccluded input with the previous window pasted in. Windows have one size per
    module (the largest over the occluder positions, moved inside the map) so that all copies
    of a batch share one convolution. Copies come in *segments*: consecutive images of a group
    with one occluder position, whose crops are plain slices. The maps equal the plain
    forward pass's up to float rounding; for AlexNet most of the work of layers 1 and 2 is saved.
    """

    def __init__(self, modules: list[nn.Module], shapes: list[torch.Size], rows: list[int], cols: list[int],
                 window: tuple[int, int], enabled: bool = True):
        self.modules, self.rows, self.cols, self.window = modules, rows, cols, window
        self.steps: list[dict | None] = []     # per module: None (pointwise) or its windows
        spans = [[(r, r + window[0]) for r in rows], [(c, c + window[1]) for c in cols]]
        for i, m in enumerate(modules if enabled else []):
            if isinstance(m, _POINTWISE):
                self.steps.append(None)
                continue
            geometry = [_sliding(m, axis) for axis in (0, 1)]
            if None in geometry or len(shapes[i]) != 4:
                break
            step = {"start": [], "size": [], "crop": [], "pad": [], "stride": []}
            for axis, (k, s, p, _) in enumerate(geometry):
                n_in, n_out = shapes[i][2 + axis], shapes[i + 1][2 + axis]
                spans[axis] = [(max(0, -((k - 1 - lo - p) // s)), min(n_out, (hi - 1 + p) // s + 1))
                               for lo, hi in spans[axis]]
                size = max(hi - lo for lo, hi in spans[axis])
                step["start"].append([min(lo, n_out - size) for lo, _ in spans[axis]])
                step["size"].append(size)
                step["crop"].append((size - 1) * s + k)
                step["pad"].append((p, p + max(0, (n_out - 1) * s + k - (n_in + 2 * p))))
                step["stride"].append(s)
            self.steps.append(step)
            if step["size"] == list(shapes[i + 1][2:]):
                break   # the window is the whole map: from here on every copy needs the full pass
        while self.steps and self.steps[-1] is None:
            self.steps.pop()
        self.end = len(self.steps)   # modules [0, end) run on windows

    def bases(self, x: Tensor) -> tuple[list[Tensor], list[Tensor | None]]:
        """The unoccluded maps of a group of images: the input of each module up to ``end`` (the
        last: the output of module ``end - 1``), and for sliding-window modules the input padded."""
        plain, padded = [x], []
        for m, step in zip(self.modules, self.steps):
            padded.append(None if step is None else self._pad(m, step, plain[-1]))
            plain.append(_apply(m, plain[-1]))
        return plain, padded

    @staticmethod
    def _pad(m: nn.Module, step: dict, x: Tensor) -> Tensor:
        (top, bottom), (left, right) = step["pad"]
        return F.pad(x, (left, right, top, bottom), value=0.0 if isinstance(m, nn.Conv2d) else float("-inf"))

    def forward(self, bases, segments: list[tuple[int, int, int, int]], fill: Tensor, layout,
                at: int | None = None, image: Tensor | None = None, channel: Tensor | None = None):
        """The copies' whole maps after module ``end - 1`` and, when ``at < end``, the chosen channel
        of module ``at``'s output summed over positions. ``segments``: ``(row, col, i0, i1)``, the
        occluder's grid position and a range of the group's images, copies in that order;
        ``image`` and ``channel``: each copy's image in the group and channel."""
        plain, padded = bases
        n = sum(i1 - i0 for _, _, i0, i1 in segments)
        # the occluder itself is the first window: the fill colour where it covers the image
        x = fill.expand(n, -1, *self.window).to(plain[0].dtype)
        origin = [(self.rows[r], self.cols[c]) for r, c, _, _ in segments]
        summed = None
        for i, (m, step) in enumerate(zip(self.modules, self.steps)):
            if step is None:
                x = _apply(m, x)
            else:
                x, origin = self._window(m, step, padded[i], x, origin, segments, layout)
            if i == at:
                base = self._gather(plain[i + 1], segments, origin, x.shape[2:])
                one = torch.arange(n, device=x.device)
                summed = plain[i + 1].flatten(2).sum(2)[image, channel] \
                    + (x[one, channel] - base[one, channel]).flatten(1).sum(1)
        full = self._gather(plain[self.end], segments, [(0, 0)] * len(segments), plain[self.end].shape[2:])
        self._paste(full, x, segments, origin, [(0, 0)] * len(segments))
        return full, summed

    def _window(self, m, step, padded, x, origin, segments, layout):
        """One sliding-window module on the copies' windows: crop, paste, convolve or pool."""
        crop_size, stride = step["crop"], step["stride"]
        starts = [(step["start"][0][r], step["start"][1][c]) for r, c, _, _ in segments]
        corners = [(a * stride[0], b * stride[1]) for a, b in starts]            # in padded coordinates
        crop = self._gather(padded, segments, corners, crop_size, layout)
        shifted = [(r + step["pad"][0][0], c + step["pad"][1][0]) for r, c in origin]
        self._paste(crop, x, segments, shifted, corners)
        if isinstance(m, nn.Conv2d):
            return F.conv2d(crop, m.weight, m.bias, m.stride, 0, 1, m.groups), starts
        return F.max_pool2d(crop, m.kernel_size, m.stride, 0), starts

    @staticmethod
    def _gather(maps: Tensor, segments, corners, size, layout=torch.contiguous_format) -> Tensor:
        """Per segment, its images' ``maps`` cropped to ``size`` at its corner, stacked."""
        n = sum(i1 - i0 for _, _, i0, i1 in segments)
        out = torch.empty(n, maps.shape[1], *size, dtype=maps.dtype, device=maps.device, memory_format=layout)
        b = 0
        for (_, _, i0, i1), (top, left) in zip(segments, corners):
            out[b: b + i1 - i0] = maps[i0:i1, :, top: top + size[0], left: left + size[1]]
            b += i1 - i0
        return out

    @staticmethod
    def _paste(target: Tensor, x: Tensor, segments, origin, corners) -> None:
        """Write each copy's window ``x`` (at ``origin``) into ``target`` (cropped at ``corners``),
        where they overlap."""
        H, W = target.shape[2:]
        h, w = x.shape[2:]
        b = 0
        for (_, _, i0, i1), (top, left), (ct, cl) in zip(segments, origin, corners):
            top, left = top - ct, left - cl
            r0, r1, c0, c1 = max(0, top), min(H, top + h), max(0, left), min(W, left + w)
            if r0 < r1 and c0 < c1:
                target[b: b + i1 - i0, :, r0:r1, c0:c1] = x[b: b + i1 - i0, :, r0 - top: r1 - top, c0 - left: c1 - left]
            b += i1 - i0


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
    batch_size = batch_size or max(1, 2 ** 24 // images[0].numel())
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = torch.device(device) if device is not None else compute_device(model)
    modules = sequence(model)
    at = layer_index(model, layer) if layer is not None else None
    rows = torch.arange(0, H - window[0] + 1, stride[0])
    cols = torch.arange(0, W - window[1] + 1, stride[1])
    n, gh, gw = len(images), len(rows), len(cols)
    per = gh * gw

    with placed(model, device), torch.no_grad():
        x = images.to(device)
        fill = fill_value(fill, x.shape[1], device, x.dtype)
        logits, strongest, summed = [], [], []
        for chunk in x.split(batch_size):
            out, kept = _run(modules, chunk, at)
            logits.append(out)
            if at is not None:
                strongest.append(kept.flatten(2).amax(2) if kept.dim() == 4 else kept)
                summed.append(kept.flatten(2).sum(2) if kept.dim() == 4 else kept)
        base_prob = torch.cat(logits).softmax(1)
        base_pred = base_prob.argmax(1)
        target = base_pred if target is None else per_image(target, n, "target", device)
        if not ((target >= 0) & (target < base_prob.shape[1])).all():
            raise ValueError(f"target must be a class index in 0..{base_prob.shape[1] - 1}")
        base_act = None
        if at is not None:
            strongest, summed = torch.cat(strongest), torch.cat(summed)      # [N, channels]
            # default: the strongest feature map of the unoccluded image
            channel = per_image(strongest.argmax(1) if channel is None else channel, n, "channel", device)
            if not ((channel >= 0) & (channel < summed.shape[1])).all():
                raise ValueError(f"channel must be in 0..{summed.shape[1] - 1} ({layer} has {summed.shape[1]} channels)")
            base_act = summed[torch.arange(n, device=device), channel]
        shapes, probe = [x.shape], x[:1]
        for m in modules:
            probe = _apply(m, probe)
            shapes.append(probe.shape)
        engine = _Local(modules, shapes, rows.tolist(), cols.tolist(), window, enabled=local)
        end = engine.end
        # channels-last convolutions and pooling are about twice as fast on a CPU
        layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format

        prob = torch.empty(n, per, device=device, dtype=x.dtype)
        pred = torch.empty(n, per, dtype=torch.long, device=device)
        act = torch.empty(n, per, device=device, dtype=x.dtype) if at is not None else None
        # the unoccluded maps of `group` images are kept at a time; a batch holds each of
        # its occluder positions for consecutive images of the group (see _Local)
        group = max(1, min(n, batch_size // 16))
        with tqdm(total=n * per, desc="occlusion", disable=not progress) as bar:
            for first in range(0, n, group):
                g = min(group, n - first)
                bases = engine.bases(x[first: first + g])
                for k0 in range(0, g * per, batch_size):
                    k1 = min(k0 + batch_size, g * per)
                    segments = [(pos // gw, pos % gw, max(k0 - pos * g, 0), min(k1 - pos * g, g))
                                for pos in range(k0 // g, (k1 - 1) // g + 1)]
                    image = torch.cat([torch.arange(i0, i1) for _, _, i0, i1 in segments]).to(device)
                    pos = torch.cat([torch.full((i1 - i0,), r * gw + c) for r, c, i0, i1 in segments]).to(device)
                    ch = None if at is None else channel[first + image]
                    h, windowed = engine.forward(bases, segments, fill, layout, at, image, ch)
                    out, kept = _run(modules[end:], h.contiguous(memory_format=layout) if h.dim() == 4 else h,
                                     None if at is None or at < end else at - end)
                    p = out.softmax(1)
                    prob[first + image, pos] = p.gather(1, target[first + image, None])[:, 0]
                    pred[first + image, pos] = p.argmax(1)
                    if at is not None:
                        act[first + image, pos] = windowed if windowed is not None else _summed(kept, ch)
                    bar.update(k1 - k0)

    def grid(t):
        return None if t is None else t.view(n, gh, gw).cpu()

    return Occlusion(
        probability=grid(prob), predicted=grid(pred), activation=grid(act), rows=rows, cols=cols,
        window=window, image_size=(H, W), target=target.cpu(),
        baseline_probability=base_prob.gather(1, target[:, None])[:, 0].cpu(), baseline_predicted=base_pred.cpu(),
        layer=layer, channel=None if channel is None else channel.cpu(),
        baseline_activation=None if base_act is None else base_act.cpu(),
    )
