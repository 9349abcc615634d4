"""Measures of a layer's filters: dead filters and frequency content (Sec. 4.1, Fig. 6).

Zeiler & Fergus find AlexNet's first-layer filters "a mix of extremely high and
low frequency information, with little coverage of the mid frequencies", and a
few "dead" filters. The paper credits the 7x7 filters at stride 2 (instead of 11x11
at stride 4) with fixing both (Fig. 6 (c)), and renormalising large filters (Sec. 3)
with preventing one filter from dominating (Fig. 6 (a)). This module puts numbers on
the claims.

**Dead filters** (:func:`dead_filters`). Filter ``f`` of a conv layer is dead if

* it *never fires*: its rectified output ``max(0, W_f * x + b_f)`` is zero at every
  position of every image of a sample (it can then pass no gradient either, so
  training cannot revive it on that data); or
* its weights have *vanished*: ``||W_f|| < rel_norm * median_g ||W_g||`` (default
  ``rel_norm = 0.01``), a filter that responds to nothing but its bias; a filter
  of exact zeros is dead by this rule whatever its bias.

**Frequency content** (:func:`frequency_content`). Each filter ``W_f`` (``C_in x
k x k``) is zero-padded to ``size x size`` and Fourier transformed; its power
``P_f(u) = sum_c |FFT(W_fc)(u)|^2`` is summed over input channels. The frequency
``u`` is measured as a fraction ``r = |u| / (1/2 cycle per pixel)`` of the Nyquist
frequency of the layer's input, so ``r`` runs from 0 (constant) to 1 along the axes
and ``sqrt 2`` at the corners (a checkerboard). The *band shares* are the fractions
of the total power with ``r < bands[0]`` (low), ``bands[0] <= r < bands[1]`` (mid)
and ``r >= bands[1]`` (high, corners included); the *radial spectrum* averages the
power over rings of equal ``r``. Zero-padding to a common size puts 11x11 and 7x7
filters on one frequency grid (it samples each filter's continuous spectrum more
densely; it adds no power). A finite filter is never a perfect band: even a
constant 7x7 box leaks a little power past its main lobe.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .infra.device import placed
from .models import activations, conv_of

__all__ = ["filter_rms", "DeadFilters", "dead_filters", "FrequencyContent", "frequency_content", "filter_table"]


def _weights(source, layer: str) -> torch.Tensor:
    """A filter bank [C, C_in, k, k] from a weight tensor, a Conv2d or a model and a conv layer name."""
    if isinstance(source, nn.Conv2d):
        return source.weight.detach()
    if isinstance(source, nn.Module):
        return conv_of(source, layer).weight.detach()
    if torch.is_tensor(source) and source.dim() == 4:
        return source.detach()
    shape = list(source.shape) if torch.is_tensor(source) else type(source).__name__
    raise ValueError(f"expected a model, a Conv2d or filters shaped [C, C_in, k, k], got {shape}")


def filter_rms(source, layer: str = "conv1") -> torch.Tensor:
    """``[C]``: the RMS ``sqrt(mean(W[f] ** 2))`` of each filter ``f`` over its input
    channels and taps, the quantity renormalisation caps (Sec. 3). ``source`` as for
    :func:`frequency_content`."""
    return _weights(source, layer).pow(2).mean(dim=(1, 2, 3)).sqrt()


@dataclass
class DeadFilters:
    """Per-filter verdicts of :func:`dead_filters` (all tensors have one entry per filter)."""

    dead: torch.Tensor          # bool: never fires or vanished
    never_fires: torch.Tensor   # bool: rectified output zero on every image and position
    vanished: torch.Tensor      # bool: weight norm below rel_norm x the layer's median
    max_response: torch.Tensor  # the largest rectified output over the sample
    norms: torch.Tensor         # ||W_f||

    @property
    def fraction(self) -> float:
        """The share of the layer's filters that are dead."""
        return float(self.dead.float().mean())

    def __repr__(self) -> str:
        return (f"DeadFilters({int(self.dead.sum())} of {len(self.dead)} dead: {int(self.never_fires.sum())} never fire, "
                f"{int(self.vanished.sum())} vanished)")


@torch.no_grad()
def dead_filters(model: nn.Module, images: torch.Tensor, layer: str = "conv1", rel_norm: float = 0.01,
                 batch_size: int = 128) -> DeadFilters:
    """Which filters of a conv ``layer`` are dead on ``images`` (model input, [N, 3, H, W]).

    See the module docstring for the two rules. The sample decides the first one:
    use images of the kind the network was trained on, a few hundred suffice.
    """
    if not rel_norm >= 0:
        raise ValueError(f"rel_norm must be a non-negative fraction of the median filter norm, got {rel_norm}")
    w = _weights(model, layer)  # raises for a layer that is not a conv layer, naming the valid ones
    device = w.device
    peak = torch.zeros(w.shape[0], device=device)
    with placed(model, device):
        for x in images.split(batch_size):
            a = activations(model, x.to(device), layer)[layer]
            peak = torch.maximum(peak, a.amax(dim=(0, 2, 3)))
    norms = w.flatten(1).norm(dim=1)
    never = peak <= 0
    vanished = norms < rel_norm * norms.median()
    return DeadFilters(dead=(never | vanished).cpu(), never_fires=never.cpu(), vanished=vanished.cpu(),
                       max_response=peak.cpu(), norms=norms.cpu())


@dataclass
class FrequencyContent:
    """What :func:`frequency_content` measures; ``shares`` columns are low, mid, high."""

    shares: torch.Tensor         # [C, 3] fraction of each filter's power per band (zeros for a zero filter)
    spectrum: torch.Tensor       # [C, R] radially averaged power, each filter's normalised to sum 1
    mean_spectrum: torch.Tensor  # [R] mean over filters of ``spectrum``
    radii: torch.Tensor          # [R] centre of each ring, as a fraction of Nyquist
    bands: tuple[float, float]

    @property
    def mean_shares(self) -> torch.Tensor:
        """[3] the layer's low, mid and high shares, averaged over filters with any power."""
        alive = self.shares.sum(1) > 0
        return self.shares[alive].mean(0) if alive.any() else torch.zeros(3)


@torch.no_grad()
def frequency_content(source, layer: str = "conv1", size: int = 32, bands: tuple[float, float] = (1 / 3, 2 / 3),
                      rings: int = 16) -> FrequencyContent:
    """Band shares and radial power spectra of a layer's filters (module docstring).

    ``source`` is a model (with ``layer``), a Conv2d, or filters [C, C_in, k, k].
    ``size`` is the common FFT size (at least the kernel size), ``bands`` the two
    boundaries between low, mid and high as fractions of Nyquist, ``rings`` the
    number of equal-width rings over ``[0, sqrt 2]`` for the radial spectrum.
    """
    w = _weights(source, layer).float().cpu()
    k = max(w.shape[-2:])
    if size < k:
        raise ValueError(f"size must be at least the kernel size {k}, got {size}")
    lo, hi = bands
    if not 0 < lo < hi:
        raise ValueError(f"bands must be two increasing fractions of Nyquist (0 < low/mid < mid/high), got {bands}")
    power = torch.fft.fft2(w, s=(size, size)).abs().pow(2).sum(1)  # [C, size, size]
    f = torch.fft.fftfreq(size)
    r = (f[:, None].pow(2) + f[None, :].pow(2)).sqrt() / 0.5
    total = power.sum((1, 2))
    safe = total.clamp_min(torch.finfo(total.dtype).tiny)
    band = torch.stack([r < lo, (r >= lo) & (r < hi), r >= hi])  # [3, size, size]
    shares = torch.einsum("cuv,buv->cb", power, band.float()) / safe[:, None]
    shares[total == 0] = 0

    ring = (r / (2 ** 0.5) * rings).long().clamp_max(rings - 1).flatten()
    counts = torch.bincount(ring, minlength=rings).float()
    ring_power = torch.zeros(len(w), rings).index_add_(1, ring, power.flatten(1)) / counts
    spectrum = ring_power / ring_power.sum(1, keepdim=True).clamp_min(torch.finfo(total.dtype).tiny)
    radii = (torch.arange(rings) + 0.5) * (2 ** 0.5) / rings
    return FrequencyContent(shares=shares, spectrum=spectrum, mean_spectrum=spectrum.mean(0), radii=radii,
                            bands=(lo, hi))


def filter_table(models: dict[str, nn.Module], images: torch.Tensor, layer: str = "conv1", size: int = 32,
                 bands: tuple[float, float] = (1 / 3, 2 / 3)) -> list[dict]:
    """One row per model for ``layer``: kernel, stride, number of filters, dead share,
    mean low/mid/high shares, and the median and largest filter RMS (to compare with
    a renormalisation radius)."""
    rows = []
    for name, model in models.items():
        conv = conv_of(model, layer)
        dead = dead_filters(model, images, layer)
        freq = frequency_content(conv, size=size, bands=bands)
        rms = filter_rms(conv)
        low, mid, high = freq.mean_shares.tolist()
        rows.append({"model": name, "kernel": conv.kernel_size[0], "stride": conv.stride[0], "filters": len(rms),
                     "dead": dead.fraction, "low": low, "mid": mid, "high": high,
                     "median_rms": float(rms.median()), "max_rms": float(rms.max())})
    return rows
