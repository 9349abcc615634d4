"""A learned decoder: the alternative to switches that the deconvnet does not take.

Zeiler & Fergus (2014, Sec. 2.1) map a layer back to pixels with the network's own
operations: unpooling at the recorded switches, rectification, and transposed
convolution with the layer's own filters. The obvious alternative is to *learn* the way
back: a stack of transposed convolutions (learned upsampling) trained to turn a layer's
feature maps ``F(x)`` into the image ``x``,

    D* = argmin_D  E_x || D(F(x)) - x ||^2,

as Dosovitskiy & Brox (2016) later did to invert whole networks. Under the squared
error the best ``D`` is the conditional mean ``E[x | F(x)]`` of the images the decoder
was trained on: what the features do not pin down, it fills in with what such images
usually look like. It receives no switches, so where in a pooling window the maximum
came from, and anything else the features lost, must come from that training prior.
Chapter 2 uses :class:`Decoder` to show the difference.

:class:`Decoder` normalises each input channel (a batch norm with no learned scale or
shift), widens the
maps with a 3x3 convolution, then doubles their size with ``k`` transposed
convolutions (kernel 4, stride 2), halving the width each time, and ends with a 3x3
convolution to three colour channels and, where ``2^k`` times the map is not the image
size, a bilinear resize. :func:`fit` trains one with Adam on the squared error in the
model's input scale; :func:`learned_decoder` caches the result, keyed by everything
that changes it; :func:`for_world` picks the data and a bounded budget for a world.
:func:`unit_picture` asks the decoder the deconvnet's question (what does one unit
draw?) and :func:`outside_variation` measures the detail a picture has where the unit
cannot see.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .infra.cache import cache_dir, cached, key
from .infra.checks import count, number
from .infra.device import model_device, seeded
from .infra.fingerprint import fingerprint
from .infra.progress import tqdm
from .models import activations, check_images, layer_index, sequence

__all__ = ["Decoder", "fit", "learned_decoder", "for_world", "unit_picture", "outside_variation",
           "RECIPES", "VERSION"]

# Bumped whenever Decoder or fit change what they compute, so that cached decoders are retrained.
VERSION = 1

# Budgets by the images a world gives the decoder (its training set, or a slice of its
# validation set) and the device. The validation slice on a CPU: about half a second per step on one core, so a
# couple of minutes; the decoder works at half the image size there (a bilinear resize
# does the last doubling) because the full-size stages would cost three times as much.
RECIPES = {
    "train": dict(images=2000, steps=300, batch_size=32, lr=2e-3, width=64, out_size=None),
    "val-cpu": dict(images=256, steps=300, batch_size=16, lr=2e-3, width=64, out_size=112),
    "val-cuda": dict(images=1024, steps=1500, batch_size=32, lr=2e-3, width=64, out_size=112),
}


class Decoder(nn.Module):
    """Learned upsampling from ``[N, channels, map_size, map_size]`` maps to ``[N, 3, S, S]`` images.

    Args:
        channels, map_size: the layer's channels and map side.
        image_size: ``S``, the side of the images to reconstruct.
        width: channels after the first convolution; each upsampling halves it (to 16 at least).
        out_size: the side the transposed convolutions aim at (default ``image_size``);
            the number of doublings is ``round(log2(out_size / map_size))``, at least one.
    """

    def __init__(self, channels: int, map_size: int, image_size: int, width: int = 64,
                 out_size: int | None = None):
        super().__init__()
        for name, v in dict(channels=channels, map_size=map_size, image_size=image_size, width=width).items():
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.config = dict(channels=channels, map_size=map_size, image_size=image_size, width=width,
                           out_size=out_size)
        self.image_size = image_size
        doublings = max(1, round(math.log2((out_size or image_size) / map_size)))
        layers = [nn.BatchNorm2d(channels, affine=False),
                  nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        c = width
        for _ in range(doublings):
            layers += [nn.ConvTranspose2d(c, max(c // 2, 16), 4, stride=2, padding=1),
                       nn.BatchNorm2d(max(c // 2, 16)), nn.ReLU()]
            c = max(c // 2, 16)
        layers.append(nn.Conv2d(c, 3, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        expected = (self.config["channels"], self.config["map_size"], self.config["map_size"])
        if features.dim() != 4 or tuple(features.shape[1:]) != expected:
            raise ValueError(f"expected features shaped [N, {', '.join(map(str, expected))}], "
                             f"got {list(features.shape)}")
        x = self.net(features)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return x


def _layer_shape(model: nn.Module, layer: str, images: Tensor) -> tuple[int, int]:
    act = activations(model, images[:1], layer)[layer]
    if act.dim() != 4 or act.shape[2] != act.shape[3]:
        raise ValueError(f"a decoder needs square feature maps; {layer} gives shape {list(act.shape[1:])}")
    return act.shape[1], act.shape[2]


def fit(model: nn.Module, images: Tensor, layer: str, *, steps: int = 300, batch_size: int = 32,
        lr: float = 2e-3, width: int = 64, out_size: int | None = None, seed: int = 0,
        progress: bool = True) -> tuple[Decoder, dict]:
    """Train a :class:`Decoder` to reconstruct ``images`` (model input, ``[N, 3, S, S]``)
    from ``layer`` of ``model``; the model is not changed.

    Each step draws ``batch_size`` images (seeded), computes their features on the
    model's device and takes an Adam step on the mean squared error; the learning rate
    follows a cosine from ``lr`` to zero. Returns the decoder (eval mode, on the model's
    device) and its history: the loss every step and the seconds it took.
    """
    steps, batch_size = count(steps, "steps"), count(batch_size, "batch_size")
    lr, width = number(lr, "lr", 0, above=True), count(width, "width")
    check_images(model, images, layer)
    device = model_device(model)
    channels, map_size = _layer_shape(model, layer, images.to(device))
    with seeded(seed):
        decoder = Decoder(channels, map_size, images.shape[-1], width, out_size).to(device).train()
    opt = torch.optim.Adam(decoder.parameters(), lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    order = torch.Generator().manual_seed(seed)
    losses, start = [], time.perf_counter()
    for _ in tqdm(range(steps), desc=f"training a decoder for {layer}", disable=not progress, leave=False):
        x = images[torch.randint(len(images), (batch_size,), generator=order)].to(device)
        features = activations(model, x, layer)[layer]
        loss = F.mse_loss(decoder(features), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return decoder.eval(), {"loss": losses, "seconds": time.perf_counter() - start}


def learned_decoder(model: nn.Module, images: Tensor, layer: str, *, steps: int = 300, batch_size: int = 32,
                    lr: float = 2e-3, width: int = 64, out_size: int | None = None, seed: int = 0,
                    progress: bool = True) -> tuple[Decoder, dict]:
    """:func:`fit`, cached on disk (:mod:`zfcourse.infra.cache`: atomic, ``weights_only``).

    The key holds the model's modules up to ``layer`` and their weights, the layer, the
    training images, the recipe, the device type and :data:`VERSION`, so a change to any
    of them trains afresh. Returns the decoder and ``meta``: the history of :func:`fit`
    and the recipe.
    """
    modules = sequence(model)[: layer_index(model, layer) + 1]
    recipe = dict(steps=steps, batch_size=batch_size, lr=lr, width=width, out_size=out_size, seed=seed)
    device = model_device(model)
    k = key(version=VERSION, layer=layer, modules=[str(m) for m in modules],
            weights=fingerprint(nn.Sequential(*modules)), images=fingerprint(images), recipe=recipe,
            device=device.type)
    path = cache_dir() / "decoders" / f"{layer}-{k}.pt"
    made = {}

    def build():
        made["decoder"], history = fit(model, images, layer, progress=progress, **recipe)
        return {"config": made["decoder"].config,
                "state_dict": {n: v.cpu() for n, v in made["decoder"].state_dict().items()},
                "meta": dict(history, recipe=recipe)}

    def validate(obj):
        Decoder(**obj["config"]).load_state_dict(obj["state_dict"])
        obj["meta"]["loss"]

    ckpt = cached(path, build, validate)
    decoder = made.get("decoder")
    if decoder is None:
        decoder = Decoder(**ckpt["config"])
        decoder.load_state_dict(ckpt["state_dict"])
    return decoder.to(device).eval(), ckpt["meta"]


def for_world(world, layer: str, progress: bool = True) -> tuple[Decoder, dict]:
    """A cached decoder for ``layer`` of ``world.model``, trained within the world's budget
    (:data:`RECIPES`), on the images ``world.decoder_source`` names: the synthetic world's
    ``world.train``; the imagenet world, which has no training images here, a slice of
    ``world.val`` spread evenly over it.

    ``meta`` adds ``source`` (``"train"`` or ``"val"``) and ``indices``, the images used,
    so that a chapter can show the decoder images it never saw.
    """
    if world.decoder_source == "train":
        source, recipe = world.train, dict(RECIPES["train"])
    else:
        source, recipe = world.val, dict(RECIPES["val-cuda" if world.device.type == "cuda" else "val-cpu"])
    n = min(recipe.pop("images"), len(source))
    indices = torch.linspace(0, len(source) - 1, n).round().long().unique().tolist()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(source, indices), batch_size=64)
    images = torch.cat([batch[0] for batch in tqdm(loader, desc="loading images", disable=not progress,
                                                   leave=False)])
    decoder, meta = learned_decoder(world.model, images, layer, progress=progress, **recipe)
    return decoder, dict(meta, source="train" if source is world.train else "val", indices=indices)


@torch.no_grad()
def unit_picture(decoder: Decoder, channel: int, position: tuple[int, int], value, n: int = 1) -> Tensor:
    """The decoder's answer to the deconvnet's question: what it draws from one unit's
    ``value`` at ``(channel, position)`` with every other feature zero, minus what it draws
    from all zeros. ``value`` is a number or one per picture (``[n]``); returns
    ``[n, 3, S, S]`` in the model's input scale."""
    c, m = decoder.config["channels"], decoder.config["map_size"]
    device = next(decoder.parameters()).device
    if not 0 <= channel < c or not all(0 <= p < m for p in position):
        raise ValueError(f"unit ({channel}, {tuple(position)}) is outside the decoder's "
                         f"{c} channels of {m}x{m}")
    seed = torch.zeros(n, c, m, m, device=device)
    seed[:, channel, position[0], position[1]] = torch.as_tensor(value, dtype=seed.dtype, device=device)
    return decoder(seed) - decoder(torch.zeros_like(seed))


def outside_variation(picture: Tensor, reference: Tensor, box) -> float:
    """How much ``picture`` ``[C, H, W]`` varies outside ``box`` ``(top, left, bottom, right)``,
    relative to ``reference`` ``[C, H, W]`` (typically the real image): the ratio of their
    standard deviations over the pixels outside the box, averaged over colour channels.
    0 for a picture that is flat there; detail a decoder invents shows as more than 0."""
    top, left, bottom, right = (max(int(v), 0) for v in box)
    outside = torch.ones(picture.shape[-2:], dtype=torch.bool, device=picture.device)
    outside[top:bottom, left:right] = False
    spread = picture[:, outside].std(1).mean()
    return float(spread / reference[:, outside.to(reference.device)].std(1).mean())
