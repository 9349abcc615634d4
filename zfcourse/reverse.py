"""The deconvnet's reverse steps, one per kind of module (Zeiler & Fergus 2014, Sec. 2.1, Fig. 1).

Each step takes a signal ``g`` on a module's output back to the module's input, using
what the forward pass recorded there:

* :func:`unpool` (max pooling): put every value back at its *switch*, the location of
  its window's maximum. AlexNet and ZFNet pool over overlapping 3x3 windows at
  stride 2, so one location can be the switch of two windows; their values must add
  (``scatter_add``), which makes unpooling the exact adjoint of max pooling with the
  switches held fixed. ``nn.MaxUnpool2d`` writes instead of adding and loses one of them.
* :func:`rectify` (ReLU): the one step in which the deconvnet, guided backpropagation
  and the plain gradient differ. With ``m = [x > 0]`` the forward mask,
  ``deconvnet: relu(g)``, ``guided: relu(g) * m``, ``gradient: g * m``.
* :func:`filter` (convolution): transposed convolution with the layer's own filters
  ``W`` (no bias), i.e. ``W^T g``.
* :func:`normalize` (local response normalisation): the normalisation's own
  vector-Jacobian product at the recorded input. :func:`unaverage` (adaptive average
  pooling) spreads each value evenly back over the window it averaged.

Windows. A neuron reaches only its receptive field, so its reverse signal is zero
outside a window of each map that grows by the kernel and stride of every layer on the
way down. The steps work on such windows: ``g`` is ``[B, C, h, w]`` and ``origin``
(``[B, 2]``: row, column) says where each neuron's window lies in its map, always inside
it; ``origin=None`` means the whole map, and a window as large as the map is treated as
the whole map. For a conv5 neuron of AlexNet the windows are 1x1 to 7x7 of the 13x13
maps, 15x15 and 19x19 of the 27x27 ones, 39x39 of conv1's 55x55 and 163x163 pixels:
a fifth of the arithmetic of the dense pass, with the same numbers.

Chapter 2 takes the steps apart with :func:`pool_unpool` (one small array pooled and
unpooled both ways), :func:`max_pool` (a layer's pooling with its switches),
:func:`shared_switches` (the windows whose switch another window chose too) and
:func:`transposed_sizes` (the ``output_padding`` each conv layer needs on the way back).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from .models import sequence

__all__ = ["RULES", "rectify", "unpool", "filter", "normalize", "unaverage", "crop", "reframe",
           "Pooling", "pool_unpool", "pooling_array", "max_pool", "shared_switches",
           "TransposedSize", "transposed_sizes"]

RULES = ("deconvnet", "guided", "gradient")


def rectify(g: Tensor, mask: Tensor | None, rule: str) -> Tensor:
    """Reverse step of a ReLU under ``rule``, in place on ``g``; ``mask`` is ``x > 0`` of the
    forward pass, in ``g``'s dtype (not used by the deconvnet)."""
    if rule == "deconvnet":  # the paper: keep the reconstruction positive, whatever the forward did
        return g.clamp_(min=0)
    if rule == "guided":
        return g.clamp_(min=0).mul_(mask)
    if rule == "gradient":
        return g.mul_(mask)
    raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")


def crop(state: Tensor, image: Tensor, origin: Tensor | None, size: tuple[int, int]) -> Tensor:
    """``state`` recorded per image ``[N, C, H, W]``, cut to each neuron's window: ``[B, C, *size]``.

    ``image`` ``[B]`` says which image each neuron belongs to. Signals without maps (dense
    layers) and windows that cover the whole map take the image's state as it is.
    """
    if origin is None or state.dim() < 4 or tuple(state.shape[-2:]) == tuple(size):
        return state[image]
    windows = state.unfold(2, size[0], 1).unfold(3, size[1], 1)  # a view: [N, C, rows, cols, *size]
    return windows[image, :, origin[:, 0], origin[:, 1]]


def reframe(x: Tensor, origin: Tensor, new_origin: Tensor, size: tuple[int, int],
            out: Tensor | None = None) -> Tensor:
    """Move each neuron's window of ``x`` (top-left at ``origin``) to ``new_origin`` and ``size``:
    zeros where ``x`` holds nothing, and what lies outside the new window dropped.
    ``out`` (zeros, ``[B, C, *size]``) receives the result if given."""
    if out is None:
        if tuple(x.shape[2:]) == tuple(size) and torch.equal(origin, new_origin):
            return x
        out = x.new_zeros(*x.shape[:2], *size)
    h, w = x.shape[2:]
    # One slice copy per neuron: the windows differ in place, and copies beat any gather here.
    for k, ((r, c), (nr, nc)) in enumerate(zip(origin.tolist(), new_origin.tolist())):
        top, left = max(r, nr), max(c, nc)
        bottom, right = min(r + h, nr + size[0]), min(c + w, nc + size[1])
        if bottom > top and right > left:
            out[k, :, top - nr:bottom - nr, left - nc:right - nc] = x[k, :, top - r:bottom - r, left - c:right - c]
    return out


def _reach(origin: Tensor, extent: tuple[int, int], start: tuple[int, int], size: tuple[int, int]):
    """The window of a map of ``size`` that holds a span of ``extent`` starting at ``origin + start``
    (possibly off the map): the span clipped to the map, as a window that lies inside it.
    Returns the window's origin, its size and the span's (unclipped) origin."""
    new_size = tuple(min(e, n) for e, n in zip(extent, size))
    first = origin + torch.tensor(start, device=origin.device)
    last = torch.tensor([n - m for n, m in zip(size, new_size)], device=origin.device)
    return first.clamp(min=0).minimum(last), new_size, first


def _whole_map(g: Tensor) -> Tensor:
    return torch.zeros(len(g), 2, dtype=torch.long, device=g.device)


def unpool(g: Tensor, switches: Tensor, size: tuple[int, int], pool: nn.MaxPool2d | None = None,
           origin: Tensor | None = None, image: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reverse step of max pooling: each value goes back to its switch, values sharing a switch add.

    ``switches`` ``[N, C, Ho, Wo]`` are the flat indices into the input plane of ``size``
    that ``F.max_pool2d(..., return_indices=True)`` recorded for N images; ``image`` ``[B]``
    says which image each row of ``g`` belongs to (default: row ``b`` is image ``b``).
    ``g`` covers the whole pooled map, or a window of it at ``origin`` (then ``pool`` gives
    the geometry). Returns the signal on the input and its window's origin.
    """
    H, W = size
    if image is None:
        image = torch.arange(len(g), device=g.device)
    if origin is None:
        origin = _whole_map(g)
    if tuple(g.shape[2:]) == tuple(switches.shape[2:]):
        new_origin, new_size = origin, (H, W)
    else:
        k, s, p, d = (_pair(a) for a in (pool.kernel_size, pool.stride or pool.kernel_size,
                                         pool.padding, pool.dilation))
        extent = tuple((n - 1) * s_ + d_ * (k_ - 1) + 1 for n, s_, d_, k_ in zip(g.shape[2:], s, d, k))
        new_origin, new_size, _ = _reach(origin * torch.tensor(s, device=g.device), extent,
                                         (-p[0], -p[1]), size)
    # Flat index in the new window, computed per image (cheap) rather than per neuron.
    key = switches // W * new_size[1] + switches % W
    offset = new_origin[:, 0] * new_size[1] + new_origin[:, 1]
    local = crop(key, image, origin, g.shape[2:]) - offset[:, None, None, None]
    out = g.new_zeros(len(g), g.shape[1], new_size[0] * new_size[1])
    # Overlapping windows can share a switch: add, do not overwrite (the adjoint of max pooling).
    out.scatter_add_(2, local.flatten(2), g.flatten(2))
    return out.view(len(g), g.shape[1], *new_size), new_origin


def filter(g: Tensor, conv: nn.Conv2d, size: tuple[int, int],
           origin: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reverse step of a convolution: ``conv_transpose2d`` with the layer's own weights, no bias.

    A signal on the whole output map goes back to the whole input map of ``size``: the
    ``output_padding`` restores rows and columns that the forward stride never reached
    (ZFNet conv1: 224 -> 110 -> 223 without it). A window at ``origin`` goes back to the
    window it reaches, clipped to the map. Returns the signal on the input and its origin.
    """
    stride, padding, dilation = conv.stride, conv.padding, conv.dilation
    kernel = conv.weight.shape[-2:]
    extent = tuple((n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(g.shape[2:], stride, dilation, kernel))
    if origin is None or _covers(g, conv, size):
        # the unpadded transpose, its padding rows cut and the unreached ones added as zeros
        (top, left), (h, w) = padding, extent
        out = F.pad(_transpose(g, conv), (-left, size[1] - (w - left), -top, size[0] - (h - top)))
        return out, _whole_map(g)
    out = _transpose(g, conv)
    new_origin, new_size, first = _reach(origin * torch.tensor(stride, device=g.device), extent,
                                         (-padding[0], -padding[1]), size)
    # Rows and columns that land on the padding are not part of the input: reframe drops them.
    return reframe(out, first, new_origin, new_size), new_origin


def _transpose(g: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv_transpose2d(g, conv.weight)`` with the conv's stride and no padding.

    A first layer (few input channels, large stride: AlexNet's 11x11 at stride 4) is done
    as its ``s*s`` output phases, each an ordinary convolution, stacked as channels and
    interleaved by ``pixel_shuffle``: the same sums, which CPU libraries run several
    times faster than a transposed convolution with three output channels.
    """
    s = conv.stride
    if conv.groups != 1 or conv.dilation != (1, 1) or s == (1, 1) or conv.in_channels > 4 or s[0] != s[1]:
        return F.conv_transpose2d(g, conv.weight, None, s, 0, 0, conv.groups, conv.dilation)
    co, ci, kh, kw = conv.weight.shape
    n = (-(-kh // s[0]), -(-kw // s[1]))  # taps of the kernel per phase
    w = F.pad(conv.weight, (0, n[1] * s[1] - kw, 0, n[0] * s[0] - kh))
    # Phase (a, b) uses taps w[:, :, s*u + a, s*v + b]; flipped, as conv2d correlates.
    k = w.view(co, ci, n[0], s[0], n[1], s[1]).permute(1, 3, 5, 0, 2, 4).flip(-1, -2)
    out = F.pixel_shuffle(F.conv2d(g, k.reshape(ci * s[0] * s[1], co, *n), padding=(n[0] - 1, n[1] - 1)), s[0])
    return out[..., :(g.shape[2] - 1) * s[0] + kh, :(g.shape[3] - 1) * s[1] + kw]


def _covers(g: Tensor, conv: nn.Conv2d, size: tuple[int, int]) -> bool:
    """Whether ``g`` is the conv's whole output map for an input of ``size``."""
    out = [(n + 2 * p - d * (k - 1) - 1) // s + 1
           for n, p, d, k, s in zip(size, conv.padding, conv.dilation, conv.weight.shape[-2:], conv.stride)]
    return list(g.shape[-2:]) == out


def _channel_sum(t: Tensor, before: int, after: int) -> Tensor:
    """Sum of ``t`` over channels ``c - before .. c + after`` (zeros beyond the ends)."""
    flat = F.pad(t.reshape(t.shape[0], t.shape[1], -1), (0, 0, before, after))
    return flat.unfold(1, before + after + 1, 1).sum(-1).view_as(t)


def normalize(g: Tensor, x: Tensor, lrn: nn.LocalResponseNorm) -> Tensor:
    """Reverse step of local response normalisation: its vector-Jacobian product at input ``x``.

    PyTorch's LRN is ``y_c = x_c / S_c^beta`` with ``S_c = k + alpha/n * sum_{j in W(c)} x_j^2``
    over the ``n`` channels ``W(c) = c - n//2 .. c + (n-1)//2``, so
    ``dL/dx_c = g_c S_c^-beta - (2 alpha beta / n) x_c sum_{j: c in W(j)} g_j x_j S_j^(-beta-1)``.
    """
    n, alpha, beta, k = lrn.size, lrn.alpha, lrn.beta, lrn.k
    S = k + alpha / n * _channel_sum(x * x, n // 2, (n - 1) // 2)
    t = g * x * S.pow(-beta - 1)
    return g * S.pow(-beta) - (2 * alpha * beta / n) * x * _channel_sum(t, (n - 1) // 2, n // 2)


def unaverage(g: Tensor, size: tuple[int, int]) -> Tensor:
    """Reverse step of adaptive average pooling to ``g``'s map size from an input map of ``size``:
    each value is spread evenly over the input window it averaged."""
    if tuple(g.shape[-2:]) == tuple(size):  # windows of one: the identity (AlexNet at 224 px)
        return g
    mats = []
    for n_in, n_out in zip(size, g.shape[-2:]):
        i = torch.arange(n_out, device=g.device)[:, None]
        start, end = (i * n_in) // n_out, -(-(i + 1) * n_in // n_out)
        j = torch.arange(n_in, device=g.device)
        mats.append(((j >= start) & (j < end)).to(g.dtype) / (end - start))
    return torch.einsum("bcij,ih,jw->bchw", g, *mats)


@dataclass
class Pooling:
    """Max pooling of one 2-D array and both ways back (all tensors 2-D)."""
    x: Tensor            # the input [H, W]
    pooled: Tensor       # window maxima [h, w]
    switches: Tensor     # flat index into x of each window's maximum [h, w]
    signal: Tensor       # what comes back from above, one value per window [h, w]
    added: Tensor        # unpooling that adds at shared switches [H, W]
    overwritten: Tensor  # nn.MaxUnpool2d: one write per switch wins [H, W]
    windows: Tensor      # how many windows chose each input position [H, W]
    kernel: int
    stride: int


def pool_unpool(x: Tensor, signal: Tensor | None = None, kernel: int = 3, stride: int = 2) -> Pooling:
    """Pool ``x`` ``[H, W]`` (no padding) and unpool ``signal`` (default: the pooled values)
    both ways. ``added`` keeps every value (``added.sum() == signal.sum()``); ``overwritten``
    keeps one value per shared switch."""
    if x.dim() != 2:
        raise ValueError(f"x must be a 2-D array [H, W], got shape {list(x.shape)}")
    x = x.float()
    pooled, switches = F.max_pool2d(x[None, None], kernel, stride, return_indices=True)
    signal = pooled.clone() if signal is None else torch.as_tensor(signal, dtype=x.dtype).view_as(pooled)
    added, _ = unpool(signal, switches, tuple(x.shape))
    overwritten = F.max_unpool2d(signal, switches, kernel, stride, output_size=tuple(x.shape))
    windows = torch.zeros(x.numel()).index_add_(0, switches.flatten(), torch.ones(switches.numel()))
    return Pooling(x, pooled[0, 0], switches[0, 0], signal[0, 0], added[0, 0], overwritten[0, 0],
                   windows.view_as(x), kernel, stride)


def pooling_array(row: int, col: int, size: int = 7, seed: int = 0) -> torch.Tensor:
    """A ``size x size`` array of distinct values (no ties for max pooling to break) with one
    bright pixel, larger than all others, at ``(row, col)``."""
    if not (0 <= row < size and 0 <= col < size):
        raise ValueError(f"({row}, {col}) is outside the {size}x{size} array")
    x = torch.randperm(size * size, generator=torch.Generator().manual_seed(seed)).float().view(size, size)
    x[row, col] = size * size + 10
    return x


def max_pool(x: Tensor, pool: nn.MaxPool2d) -> tuple[Tensor, Tensor]:
    """Max pooling of ``x`` ``[N, C, H, W]`` exactly as the module ``pool`` does it, and the
    switches it records: ``(pooled, switches)``, the switches as flat indices into each
    ``H x W`` input plane (what :func:`unpool` takes)."""
    return F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                        ceil_mode=pool.ceil_mode, return_indices=True)


def shared_switches(switches: Tensor, size: tuple[int, int]) -> Tensor:
    """For switches ``[N, C, h, w]`` into input planes of ``size``: whether each window's
    switch is also the switch of another window of the same plane (bool, same shape).
    These are the windows whose values ``nn.MaxUnpool2d`` writes over one another."""
    flat = switches.flatten(2)
    chosen = torch.zeros(*flat.shape[:2], size[0] * size[1], device=flat.device)
    chosen.scatter_add_(2, flat, torch.ones_like(flat, dtype=chosen.dtype))
    return (chosen.gather(2, flat) > 1).view_as(switches)


class TransposedSize(NamedTuple):
    """One conv layer's sizes on the way up and back down (square maps)."""
    layer: str           # the paper's name, conv1..conv5
    kernel: int
    stride: int
    input: int           # side of the conv's input map
    output: int          # side of its output map
    transposed: int      # what conv_transpose2d returns without output_padding
    output_padding: int  # the rows and columns it must add to restore ``input``


def transposed_sizes(model: nn.Module, image_size: int) -> list[TransposedSize]:
    """For each conv layer of ``model`` at ``image_size`` px input: its map sizes, the size
    its transposed convolution returns, and the ``output_padding`` that restores the input
    size (what :func:`filter` adds). Sizes come from a forward pass of a blank image."""
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    rows = []
    with torch.no_grad():
        for m in sequence(model):
            if isinstance(m, (nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear)):
                break
            out = m(x)
            if isinstance(m, nn.Conv2d):
                (k, _), (s, _), (p, _) = m.kernel_size, m.stride, m.padding
                naive = (out.shape[-1] - 1) * s - 2 * p + k
                rows.append(TransposedSize(f"conv{len(rows) + 1}", k, s, x.shape[-1], out.shape[-1],
                                           naive, x.shape[-1] - naive))
            x = out
    return rows
