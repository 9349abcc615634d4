"""Projecting a neuron to pixel space: the deconvnet of Zeiler & Fergus (2014), Sec. 2.1, Fig. 1.

To see what one activation ``a = A_L[c, h, w]`` of an image responds to, the paper sets
every other activation of layer ``L`` to zero and runs the network backwards to the
pixels, module by module, with what the forward pass recorded (:mod:`zfcourse.reverse`)::

    R_L     = a * e_(c,h,w)                    seed: the activation's own value, all else 0
    unpool:   R_in[s_i] += R_out[i]            s_i: switch (argmax) of pooling window i
    rectify:  R_in = relu(R_out)               rule="deconvnet" (the paper)
              R_in = relu(R_out) * [x > 0]     rule="guided" (Springenberg et al. 2015)
              R_in = R_out * [x > 0]           rule="gradient" (Simonyan et al. 2014)
    filter:   R_in = W^T R_out                 conv_transpose2d with the layer's own W, no bias
    dense:    R_in = W^T R_out
    norm:     R_in = R_out                     lrn="identity" (default, the paper)
              R_in = J_LRN(x)^T R_out          lrn="backward"

The three rules differ only at the ReLUs, so each projection is the backward pass of the
same network with the ReLU's backward replaced (and, with ``lrn="identity"``, the
normalisation's skipped); with ``rule="gradient"`` and ``lrn="backward"`` it is
``a * da/d(images)``. :func:`project_autograd` computes the same thing with autograd, as
per-neuron attribution libraries do; the two agree to float precision.

Contrast normalisation. The paper's reconstruction path does not use the contrast
normalisation of layers 1 and 2 (Sec. 2.1): by default (``lrn="identity"``) the signal
passes straight through it. ``lrn="backward"`` applies the normalisation's own
vector-Jacobian product at the recorded input instead: then ``rule="gradient"`` is
exactly the gradient, and all three rules are the backward pass of one network under a
ReLU rule, the form autograd computes (:func:`project_autograd` takes both). With the
constants of AlexNet and ZFNet (``k=2``, ``alpha=1e-4``) the normalisation is close to
the constant factor ``k^-beta`` (about 0.59), so the two give nearly proportional
projections (to 0.03% with ZFNet's random initial weights).

Batches. ``channel`` is an int or a LongTensor ``[N]`` (one neuron per image; result
``[N, 3, H, W]``) or ``[N, M]`` (``M`` neurons per image; result ``[N, M, 3, H, W]``).
``position`` is ``None`` (each neuron's strongest position in its channel), ``(h, w)``,
or a LongTensor ``[N, 2]`` / ``[N, M, 2]`` shaped like ``channel``. The strongest
activation of every conv5 channel of each image, in one call::

    project(model, images, "conv5", torch.arange(256).expand(len(images), 256))

The forward pass runs once for all images; the reverse pass then runs for ``chunk_size``
neurons at a time, each indexing the recorded switches and masks of its own image, and
only over the window of each map that the neuron reaches.

:func:`projection_chunks` projects neurons of several layers, any number per image, from
one forward pass to the deepest of them (what the atlas needs: every unit's top 9, image
by image).

The model is left as it was: no hooks, its train/eval flags untouched (Dropout is the
identity, as in eval mode), its in-place ReLUs never run in place, no ``.grad``.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import reverse
from .models import check_images, layer_index, sequence

__all__ = ["project", "projection_chunks", "project_autograd", "outside_share", "mean_similarity",
           "RULES", "LRN_OPTIONS", "SUPPORTED"]

RULES = reverse.RULES
LRN_OPTIONS = ("identity", "backward")
SUPPORTED = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.LocalResponseNorm, nn.Dropout,
             nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear)


def project(model: nn.Module, images: Tensor, layer: str, channel: int | Tensor,
            position: tuple[int, int] | Tensor | None = None, rule: str = "deconvnet", *,
            lrn: str = "identity", chunk_size: int = 64) -> Tensor:
    """Project neurons of ``layer`` to pixel space by an explicit reverse pass (see the module doc).

    Args:
        model: a sequence of the modules in :data:`SUPPORTED` (AlexNet, ZFNet, the minis).
        images: ``[N, 3, H, W]``, on the device the model is on.
        layer: a name from :func:`zfcourse.models.layer_names` (``"conv5"``, ``"pool2"``...).
        channel: int, LongTensor ``[N]`` or ``[N, M]``.
        position: None (strongest), ``(h, w)``, LongTensor ``[N, 2]`` or ``[N, M, 2]``;
            must be None for dense layers.
        rule: ``"deconvnet"``, ``"guided"`` or ``"gradient"``: the ReLU's reverse step.
        lrn: ``"identity"`` (the paper: skipped) or ``"backward"`` (its vector-Jacobian
            product): the normalisation's reverse step.
        chunk_size: neurons per reverse pass; memory grows with it, about three times
            ``chunk_size`` times the largest feature map.

    Returns:
        ``[N, 3, H, W]``, or ``[N, M, 3, H, W]`` for a channel of shape ``[N, M]``.
    """
    modules = _prepare(model, images, layer, rule, lrn)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    with torch.no_grad():
        shapes, state = [images.shape], []
        x = images
        for m in modules:
            x, kept = _forward(m, x)
            shapes.append(x.shape)
            state.append(kept)
        image, channel, position, value, lead = _neurons(x, layer, channel, position)
        out = images.new_zeros(len(image), *images.shape[1:])
        for start in range(0, len(image), chunk_size):
            part = slice(start, start + chunk_size)
            g, origin = _seed(x, channel[part], None if position is None else position[part], value[part])
            g, origin = _reverse(modules, shapes, state, g, origin, image[part], rule, lrn)
            _paste(g, origin, out[part])
    return out.view(*lead, *images.shape[1:])


def projection_chunks(model: nn.Module, images: Tensor, neurons: dict[str, tuple[Tensor, Tensor, Tensor]],
                      rule: str = "deconvnet", *, lrn: str = "identity", chunk_size: int = 64):
    """Project neurons of several conv or pooling layers from one forward pass of ``images``.

    ``neurons[layer] = (image, channel, position)``: LongTensors ``[E]``, ``[E]`` and
    ``[E, 2]`` giving each neuron's row of ``images``, its channel and its ``(h, w)``;
    an image may hold any number of neurons, of any layers. Each is seeded with its own
    value, as in :func:`project`, and the results are the same. Yields, as they are
    made, ``(layer, slice of that layer's neurons, [chunk_size, 3, H, W])``, layer by
    layer: the memory they take stays bounded however many neurons are asked for.
    """
    if not neurons:
        raise ValueError("neurons must name at least one layer")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    where = {layer: layer_index(model, layer) for layer in neurons}
    modules = _prepare(model, images, max(where, key=where.get), rule, lrn)
    with torch.no_grad():
        shapes, state, acts = [images.shape], [], {}
        x = images
        for i, m in enumerate(modules):
            x, kept = _forward(m, x)
            shapes.append(x.shape)
            state.append(kept)
            if i in where.values():
                acts[i] = x
        checked = {layer: _check_neurons(acts[where[layer]], layer, len(images), *n) for layer, n in neurons.items()}
    for layer, (image, channel, position) in checked.items():
        act = acts[where[layer]]
        chain = modules[: where[layer] + 1]
        for start in range(0, len(image), chunk_size):
            part = slice(start, start + chunk_size)
            with torch.no_grad():
                c, p = channel[part], position[part]
                g, origin = _seed(act, c, p, act[image[part], c, p[:, 0], p[:, 1]])
                g, origin = _reverse(chain, shapes, state, g, origin, image[part], rule, lrn)
                out = images.new_zeros(len(c), *images.shape[1:])
                _paste(g, origin, out)
            yield layer, part, out


def _check_neurons(act: Tensor, layer: str, n: int, image, channel, position):
    """The neurons of :func:`projection_chunks` as LongTensors on the maps' device, checked."""
    if act.dim() != 4:
        raise ValueError(f"{layer} is a dense layer; projection_chunks projects conv and pooling layers")
    image, channel, position = (torch.as_tensor(t, device=act.device) for t in (image, channel, position))
    if any(t.is_floating_point() or t.dtype == torch.bool for t in (image, channel, position)):
        raise ValueError(f"image, channel and position of {layer} must hold integers")
    if image.dim() != 1 or channel.shape != image.shape or position.shape != (len(image), 2):
        raise ValueError(f"{layer}: image and channel must be [E] and position [E, 2]; got shapes "
                         f"{list(image.shape)}, {list(channel.shape)}, {list(position.shape)}")
    C, H, W = act.shape[1:]
    for name, t, limit in (("image", image, n), ("channel", channel, C)):
        bad = (t < 0) | (t >= limit)
        if bad.any():
            raise ValueError(f"{name} {t[bad][0].item()} is out of range for {layer}: 0..{limit - 1}")
    bad = ((position < 0) | (position >= torch.tensor([H, W], device=act.device))).any(-1)
    if bad.any():
        h, w = position[bad][0].tolist()
        raise ValueError(f"position ({h}, {w}) is outside {layer}'s {H}x{W} map")
    return image, channel, position


def _forward(m: nn.Module, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """One module's forward step and what its reverse step will need."""
    if isinstance(m, nn.ReLU):
        x = torch.relu(x)  # never in place: an in-place ReLU would overwrite a recorded tensor
        return x, (x > 0).to(x.dtype)  # a mask in the signal's dtype multiplies faster than a bool one
    if isinstance(m, nn.MaxPool2d):
        return F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode,
                            return_indices=True)
    if isinstance(m, nn.LocalResponseNorm):
        return m(x), x
    if isinstance(m, nn.Dropout):  # eval mode
        return x, None
    return m(x), None


def _reverse(modules, shapes, state, g: Tensor, origin: Tensor | None, image: Tensor,
             rule: str, lrn: str) -> tuple[Tensor, Tensor | None]:
    """Walk the modules backwards from the seed ``g`` (its window at ``origin``) to the pixels;
    returns the window on the image and its origin."""
    for i in reversed(range(len(modules))):
        m, size, kept = modules[i], tuple(shapes[i][2:]), state[i]
        if isinstance(m, nn.ReLU):
            mask = None if rule == "deconvnet" else reverse.crop(kept, image, origin, g.shape[2:])
            g = reverse.rectify(g, mask, rule)
        elif isinstance(m, nn.MaxPool2d):
            g, origin = reverse.unpool(g, kept, size, m, origin, image)
        elif isinstance(m, nn.Conv2d):
            g, origin = reverse.filter(g, m, size, origin)
        elif isinstance(m, nn.LocalResponseNorm) and lrn == "backward":
            g = reverse.normalize(g, reverse.crop(kept, image, origin, g.shape[2:]), m)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            if origin is not None:  # a window of the pooled map: the whole map first
                g = reverse.reframe(g, origin, torch.zeros_like(origin), shapes[i + 1][2:])
            g, origin = reverse.unaverage(g, size), None
        elif isinstance(m, nn.Flatten):
            g, origin = g.reshape(len(g), *shapes[i][1:]), None
        elif isinstance(m, nn.Linear):
            g = g @ m.weight
    return g, origin


def _paste(g: Tensor, origin: Tensor | None, out: Tensor) -> None:
    """Write each neuron's window on the image into its row of ``out`` (zeros)."""
    if origin is None or g.shape[2:] == out.shape[2:]:
        out.copy_(g)
    else:
        reverse.reframe(g, origin, torch.zeros_like(origin), out.shape[2:], out=out)


def _seed(act: Tensor, channel: Tensor, position: Tensor | None, value: Tensor) -> tuple[Tensor, Tensor | None]:
    """Each neuron's activation alone on its layer: a 1x1 window at its position."""
    rows = torch.arange(len(channel), device=act.device)
    if position is None:
        g = act.new_zeros(len(channel), act.shape[1])
        g[rows, channel] = value
        return g, None
    g = act.new_zeros(len(channel), act.shape[1], 1, 1)
    g[rows, channel, 0, 0] = value
    return g, position


class _RuleReLU(torch.autograd.Function):
    """A ReLU whose backward follows a rule: how attribution libraries override autograd."""

    @staticmethod
    def forward(ctx, x, rule):
        y = x.clamp(min=0)
        ctx.save_for_backward(y)
        ctx.rule = rule
        return y

    @staticmethod
    def backward(ctx, g):
        # The rules written out again, not taken from reverse.rectify: a reference of its own.
        (y,) = ctx.saved_tensors
        if ctx.rule == "deconvnet":
            return g.clamp(min=0), None
        if ctx.rule == "guided":
            return g.clamp(min=0) * (y > 0), None
        return g * (y > 0), None


class _PassThrough(torch.autograd.Function):
    """A module applied forwards and skipped backwards (``lrn="identity"``)."""

    @staticmethod
    def forward(ctx, x, module):
        return module(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


def project_autograd(model: nn.Module, images: Tensor, layer: str, channel: int | Tensor,
                     position: tuple[int, int] | Tensor | None = None, rule: str = "deconvnet", *,
                     lrn: str = "identity") -> Tensor:
    """The same projections as :func:`project`, by autograd: the reference it is checked against.

    One forward pass with autograd, the ReLUs' backward replaced by ``rule`` through a
    custom :class:`torch.autograd.Function` (the model itself is not touched), then one
    ``torch.autograd.grad`` call per neuron of each image, seeded with the neuron's value.
    Arguments and result as for :func:`project`.
    """
    modules = _prepare(model, images, layer, rule, lrn)
    pixels = images.detach().requires_grad_()
    with torch.enable_grad():
        x = pixels
        for m in modules:
            if isinstance(m, nn.ReLU):
                x = torch.relu(x) if rule == "gradient" else _RuleReLU.apply(x, rule)
            elif isinstance(m, nn.LocalResponseNorm) and lrn == "identity":
                x = _PassThrough.apply(x, m)
            elif not isinstance(m, nn.Dropout):  # eval mode
                x = m(x)
        image, channel, position, value, lead = _neurons(x.detach(), layer, channel, position)
        per_image = 1 if len(lead) == 1 else lead[1]
        grads = []
        for j in range(per_image):
            part = slice(j, None, per_image)  # the j-th neuron of every image
            seed = torch.zeros_like(x)
            where = (image[part], channel[part]) + (() if position is None else tuple(position[part].T))
            seed[where] = value[part]
            grads.append(torch.autograd.grad(x, pixels, seed, retain_graph=j + 1 < per_image)[0])
    return torch.stack(grads, 1).view(*lead, *images.shape[1:])


def _prepare(model: nn.Module, images: Tensor, layer: str, rule: str, lrn: str) -> list[nn.Module]:
    """Check the arguments; the modules from the input up to ``layer``."""
    check_images(model, images, layer)
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if lrn not in LRN_OPTIONS:
        raise ValueError(f"unknown lrn {lrn!r}; choose one of {', '.join(LRN_OPTIONS)}")
    modules = sequence(model)[: layer_index(model, layer) + 1]
    supported = ", ".join(t.__name__ for t in SUPPORTED)
    for m in modules:
        if not isinstance(m, SUPPORTED):
            raise ValueError(f"the reverse pass does not support {type(m).__name__} (on the way to {layer}); "
                             f"supported modules: {supported}")
        if isinstance(m, nn.Conv2d) and (isinstance(m.padding, str) or m.padding_mode != "zeros"):
            raise ValueError(f"the reverse pass supports Conv2d with numeric zero padding only; got "
                             f"padding={m.padding!r}, padding_mode={m.padding_mode!r} in {m}")
    return modules


def _neurons(act: Tensor, layer: str, channel, position):
    """The neurons asked for, one row each: image, channel, position (None for dense layers),
    value, and the leading shape of the result."""
    N, C = act.shape[:2]
    device = act.device
    if isinstance(channel, bool) or not isinstance(channel, numbers.Integral) and not (
            torch.is_tensor(channel) and not channel.is_floating_point() and channel.dtype != torch.bool):
        raise ValueError(f"channel must be an int or a LongTensor [N] or [N, M]; got {channel!r}")
    channel = torch.as_tensor(channel, device=device)
    if channel.dim() == 0:
        channel = channel.expand(N)
    if channel.dim() not in (1, 2) or len(channel) != N:
        raise ValueError(f"channel must be an int or a LongTensor [N] or [N, M] with N = {N} images; "
                         f"got shape {list(channel.shape)}")
    lead = tuple(channel.shape)
    channel = channel.reshape(N, -1)
    bad = (channel < 0) | (channel >= C)
    if bad.any():
        raise ValueError(f"channel {channel[bad][0].item()} is out of range: {layer} has {C} channels, 0..{C - 1}")
    maps = act[torch.arange(N, device=device)[:, None], channel]  # [N, M, ...]
    if act.dim() == 2:
        if position is not None:
            raise ValueError(f"{layer} is a dense layer and has no positions; pass position=None")
        value = maps
    else:
        H, W = act.shape[2:]
        if position is None:
            flat = maps.flatten(2).argmax(2)
            position = torch.stack((flat // W, flat % W), -1)
        else:
            position = torch.as_tensor(position, device=device)
            if position.is_floating_point() or position.dtype == torch.bool:
                raise ValueError(f"position must hold integers; got {position.dtype}")
            if position.shape == (2,):
                position = position.expand(*lead, 2)
            if position.shape != lead + (2,):
                raise ValueError(f"position must be None, (h, w) or a LongTensor shaped {list(lead + (2,))} "
                                 f"like channel; got shape {list(position.shape)}")
            position = position.reshape(N, -1, 2)
            bad = ((position < 0) | (position >= torch.tensor([H, W], device=device))).any(-1)
            if bad.any():
                h, w = position[bad][0].tolist()
                raise ValueError(f"position ({h}, {w}) is outside {layer}'s {H}x{W} map "
                                 f"(rows 0..{H - 1}, columns 0..{W - 1})")
        value = maps.flatten(2).gather(2, (position[..., 0] * W + position[..., 1])[..., None])[..., 0]
        position = position.reshape(-1, 2)
    image = torch.arange(N, device=device).repeat_interleave(channel.shape[1])
    return image, channel.reshape(-1), position, value.reshape(-1), lead


def outside_share(x: Tensor, box) -> Tensor:
    """The share of each item's energy (sum of squares over ``[..., C, H, W]``) that lies
    outside ``box``; 0 for an all-zero item."""
    top, left, bottom, right = box
    energy = x.detach().float().pow(2).sum(-3)
    inside = torch.zeros(energy.shape[-2:], dtype=torch.bool, device=x.device)
    inside[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = True
    total = energy.flatten(-2).sum(-1)
    return (energy * ~inside).flatten(-2).sum(-1) / total.clamp_min(1e-30) * (total > 0)


def mean_similarity(projections: Tensor) -> float:
    """The mean cosine similarity between the projections ``[M, ...]`` of different neurons,
    over the ``M (M - 1)`` ordered pairs: 1 if all point the same way, 0 if orthogonal."""
    if len(projections) < 2:
        raise ValueError(f"need at least two projections to compare, got {len(projections)}")
    p = F.normalize(projections.detach().float().flatten(1), dim=1)
    m = len(p)
    return float(((p @ p.T).sum() - p.pow(2).sum()) / (m * (m - 1)))
