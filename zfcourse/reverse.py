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
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

__all__ = ["RULES", "rectify", "unpool", "filter", "normalize", "unaverage", "crop", "reframe"]

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
        output_padding = tuple(n - (e - 2 * p) for n, e, p in zip(size, extent, padding))
        out = F.conv_transpose2d(g, conv.weight, None, stride, padding, output_padding, conv.groups, dilation)
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
