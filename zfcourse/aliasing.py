"""Aliasing as a number: how much of what a strided layer passes on is folded back
(Zeiler & Fergus 2014, Sec. 4.1: layer-2 "aliasing artifacts caused by the large stride 4
used in the 1st layer convolutions", Fig. 6 (d) and (e)).

A convolution with filter ``w`` responds to a grating of frequency ``(u, v)`` (cycles per
pixel) with amplitude ``|W(u, v)|``, the filter's Fourier transform there. Sampling its
output every ``s`` pixels keeps only frequencies up to the output's Nyquist frequency
``1 / (2 s)`` along each axis; a grating above it comes back at a false, lower frequency
(``|u - k / s|``), indistinguishable from a real one. So the share of a filter's power
outside that band::

    aliased(w, s) = sum_{max(|u|, |v|) > 1 / (2 s)} |W(u, v)|^2  /  sum_{u, v} |W(u, v)|^2

is the share of its response to broadband input that the stride folds back. A filter of
white noise has ``1 - 1 / s^2`` of its power there (15/16 at stride 4, 3/4 at stride 2):
the learned filters sit below that to the extent that training made them smooth.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .infra.checks import count
from .models import conv_of

__all__ = ["Aliasing", "aliased_share"]


@dataclass(repr=False)
class Aliasing:
    """``shares [C]``: each filter's aliased share at ``stride`` (0 for a zero filter);
    ``white``: a white-noise filter's, ``1 - 1 / stride^2``."""
    layer: str
    stride: int
    shares: Tensor

    @property
    def white(self) -> float:
        return 1 - 1 / self.stride ** 2

    def mean(self) -> float:
        """The mean share over the filters with any power."""
        alive = self.shares > 0
        return float(self.shares[alive].mean()) if alive.any() else 0.0

    def __repr__(self) -> str:
        return (f"Aliasing({self.layer}, stride {self.stride}: mean share {self.mean():.3f}, "
                f"white noise {self.white:.3f})")


@torch.no_grad()
def aliased_share(model: nn.Module, layer: str = "conv1", size: int = 64) -> Aliasing:
    """The share of each of ``layer``'s filters' power above the Nyquist frequency of its
    output, ``1 / (2 * stride)`` along either axis (see the module doc); ``size``: the
    FFT size (at least the kernel size), the frequency resolution."""
    conv = conv_of(model, layer)
    stride = conv.stride[0]
    if conv.stride[1] != stride:
        raise ValueError(f"{layer} has unequal strides {conv.stride}; one stride is needed")
    w = conv.weight.detach().float().cpu()
    size = count(size, "size")
    if size < max(w.shape[-2:]):
        raise ValueError(f"size must be at least the kernel size {max(w.shape[-2:])}, got {size}")
    power = torch.fft.fft2(w, s=(size, size)).abs().pow(2).sum(1)          # [C, size, size]
    f = torch.fft.fftfreq(size).abs()
    beyond = torch.maximum(f[:, None], f[None, :]) > 1 / (2 * stride)
    total = power.sum((1, 2))
    shares = (power * beyond).sum((1, 2)) / total.clamp_min(torch.finfo(total.dtype).tiny)
    shares[total == 0] = 0
    return Aliasing(layer, stride, shares)
