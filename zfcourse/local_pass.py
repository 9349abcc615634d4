"""The forward pass of many occluded copies, recomputing only what the occluder reaches.

An occluder over rows ``[r, r + a)`` changes, after a sliding-window module (kernel ``k``,
stride ``s``, padding ``p``), only the output rows ``o`` whose window meets it::

    ceil((r + p - k + 1) / s) <= o <= floor((r + a - 1 + p) / s)

and pointwise modules (ReLU, normalisation across channels) change nothing further. So until
that span covers a whole map, an occluded copy's map is the unoccluded map with one window
recomputed, from a crop of the unoccluded input with the previous window pasted in. Windows
have one size per module (the largest over the occluder positions, moved inside the map) so
that all copies of a batch share one convolution. Copies come in *segments*: consecutive
images of a group with one occluder position, ``(row, col, i0, i1)``, whose crops are plain
slices. The maps equal the plain forward pass's up to float rounding; for AlexNet most of
the work of layers 1 and 2 is saved. :func:`zfcourse.occlusion.occlusion_map` uses it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LocalPass", "Step", "apply", "plan", "run"]

_POINTWISE = (nn.ReLU, nn.LocalResponseNorm, nn.Dropout, nn.BatchNorm2d)   # in eval mode


def apply(m: nn.Module, x: Tensor) -> Tensor:
    """``m(x)``, never in place: the unoccluded maps are kept and reused."""
    return torch.relu(x) if isinstance(m, nn.ReLU) else m(x)


def run(modules: list[nn.Module], x: Tensor, at: int | None) -> tuple[Tensor, Tensor | None]:
    """The output of the modules in turn, and that of module ``at`` (None: not kept)."""
    kept = None
    for i, m in enumerate(modules):
        x = apply(m, x)
        if i == at:
            kept = x
    return x, kept


@dataclass
class Step:
    """The windows of one sliding-window module, per axis (rows, then columns): ``start[axis]``
    the first output index of each occluder position's window, ``size`` the window's length,
    ``crop`` the input length it reads, ``pad`` the input's padding (before, after)."""
    start: list[list[int]]
    size: list[int]
    crop: list[int]
    pad: list[tuple[int, int]]
    stride: list[int]


def _sliding(m: nn.Module, axis: int) -> tuple[int, int, int] | None:
    """(kernel, stride, padding) of a sliding-window module along an axis, None for others."""
    if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str) \
            and tuple(m.dilation) == (1, 1):
        return m.kernel_size[axis], m.stride[axis], m.padding[axis]
    if isinstance(m, nn.MaxPool2d) and not m.return_indices and m.dilation in (1, (1, 1)):
        k, s, p = (v if isinstance(v, tuple) else (v, v)
                   for v in (m.kernel_size, m.stride or m.kernel_size, m.padding))
        return k[axis], s[axis], p[axis]
    return None


def _step(geometry, spans, n_in, n_out) -> tuple[Step, list]:
    """The windows of one module from the spans its input changes in; and its output's spans."""
    step = Step([], [], [], [], [])
    out_spans = []
    for axis, (k, s, p) in enumerate(geometry):
        changed = [(max(0, -((k - 1 - lo - p) // s)), min(n_out[axis], (hi - 1 + p) // s + 1))
                   for lo, hi in spans[axis]]
        size = max(hi - lo for lo, hi in changed)
        step.start.append([min(lo, n_out[axis] - size) for lo, _ in changed])
        step.size.append(size)
        step.crop.append((size - 1) * s + k)
        step.pad.append((p, p + max(0, (n_out[axis] - 1) * s + k - (n_in[axis] + 2 * p))))
        step.stride.append(s)
        out_spans.append(changed)
    return step, out_spans


def plan(modules: list[nn.Module], shapes: list[torch.Size], rows: list[int], cols: list[int],
         window: tuple[int, int]) -> list[Step | None]:
    """Per module, from the first, its windows (None: pointwise), up to the last module whose
    window is smaller than its map. ``shapes[i]``: module ``i``'s input shape, ``shapes[-1]``
    the last output's."""
    steps: list[Step | None] = []
    spans = [[(r, r + window[0]) for r in rows], [(c, c + window[1]) for c in cols]]
    for i, m in enumerate(modules):
        if isinstance(m, _POINTWISE):
            steps.append(None)
            continue
        geometry = [_sliding(m, axis) for axis in (0, 1)]
        if None in geometry or len(shapes[i]) != 4:
            break
        step, spans = _step(geometry, spans, shapes[i][2:], shapes[i + 1][2:])
        steps.append(step)
        if step.size == list(shapes[i + 1][2:]):
            break   # the window is the whole map: from here on every copy needs the full pass
    while steps and steps[-1] is None:
        steps.pop()
    return steps


def _gather(maps: Tensor, segments, corners, size, layout=torch.contiguous_format) -> Tensor:
    """Per segment, its images' ``maps`` cropped to ``size`` at its corner, stacked."""
    n = sum(i1 - i0 for _, _, i0, i1 in segments)
    out = torch.empty(n, maps.shape[1], *size, dtype=maps.dtype, device=maps.device,
                      memory_format=layout)
    b = 0
    for (_, _, i0, i1), (top, left) in zip(segments, corners):
        out[b: b + i1 - i0] = maps[i0:i1, :, top: top + size[0], left: left + size[1]]
        b += i1 - i0
    return out


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
            target[b: b + i1 - i0, :, r0:r1, c0:c1] = \
                x[b: b + i1 - i0, :, r0 - top: r1 - top, c0 - left: c1 - left]
        b += i1 - i0


def _pad(m: nn.Module, step: Step, x: Tensor) -> Tensor:
    (top, bottom), (left, right) = step.pad
    return F.pad(x, (left, right, top, bottom),
                 value=0.0 if isinstance(m, nn.Conv2d) else float("-inf"))


class LocalPass:
    """The occluded copies' maps after the first modules, from the unoccluded maps.

    ``enabled=False`` plans no windows: every copy then takes the plain forward pass.
    """

    def __init__(self, modules: list[nn.Module], shapes: list[torch.Size], rows: list[int],
                 cols: list[int], window: tuple[int, int], enabled: bool = True):
        self.modules, self.rows, self.cols, self.window = modules, rows, cols, window
        self.steps = plan(modules, shapes, rows, cols, window) if enabled else []
        self.end = len(self.steps)   # modules [0, end) run on windows

    def bases(self, x: Tensor) -> tuple[list[Tensor], list[Tensor | None]]:
        """The unoccluded maps of a group of images: the input of each module up to ``end`` (the
        last: the output of module ``end - 1``), and for sliding-window modules the input padded."""
        plain, padded = [x], []
        for m, step in zip(self.modules, self.steps):
            padded.append(None if step is None else _pad(m, step, plain[-1]))
            plain.append(apply(m, plain[-1]))
        return plain, padded

    def forward(self, bases, segments: list[tuple[int, int, int, int]], fill: Tensor, layout,
                at: int | None = None, image: Tensor | None = None, channel: Tensor | None = None):
        """The copies' whole maps after module ``end - 1`` and, when ``at < end``, the chosen
        channel of module ``at``'s output summed over positions. ``image`` and ``channel``: each
        copy's image in the group and channel."""
        plain, padded = bases
        n = sum(i1 - i0 for _, _, i0, i1 in segments)
        # the occluder itself is the first window: the fill colour where it covers the image
        x = fill.expand(n, -1, *self.window).to(plain[0].dtype)
        origin = [(self.rows[r], self.cols[c]) for r, c, _, _ in segments]
        summed = None
        for i, (m, step) in enumerate(zip(self.modules, self.steps)):
            if step is None:
                x = apply(m, x)
            else:
                x, origin = self._window(m, step, padded[i], x, origin, segments, layout)
            if i == at:
                summed = self._summed(plain[i + 1], x, segments, origin, image, channel)
        corners = [(0, 0)] * len(segments)
        full = _gather(plain[self.end], segments, corners, plain[self.end].shape[2:])
        _paste(full, x, segments, origin, corners)
        return full, summed

    @staticmethod
    def _summed(plain, x, segments, origin, image, channel) -> Tensor:
        """The copies' channel summed: the unoccluded sum, less the window's old, plus its new."""
        base = _gather(plain, segments, origin, x.shape[2:])
        one = torch.arange(len(x), device=x.device)
        return plain.flatten(2).sum(2)[image, channel] \
            + (x[one, channel] - base[one, channel]).flatten(1).sum(1)

    def _window(self, m, step: Step, padded, x, origin, segments, layout):
        """One sliding-window module on the copies' windows: crop, paste, convolve or pool."""
        starts = [(step.start[0][r], step.start[1][c]) for r, c, _, _ in segments]
        corners = [(a * step.stride[0], b * step.stride[1]) for a, b in starts]  # padded coords
        crop = _gather(padded, segments, corners, step.crop, layout)
        shifted = [(r + step.pad[0][0], c + step.pad[1][0]) for r, c in origin]
        _paste(crop, x, segments, shifted, corners)
        if isinstance(m, nn.Conv2d):
            return F.conv2d(crop, m.weight, m.bias, m.stride, 0, 1, m.groups), starts
        return F.max_pool2d(crop, m.kernel_size, m.stride, 0), starts
