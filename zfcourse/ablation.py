"""Varying the network's depth and width: Zeiler & Fergus (2014), Sec. 5.1, Table 3.

The paper retrains its networks from scratch with layers removed or resized and
reads the errors: removing the dense layers 6 and 7, or the conv layers 3 and 4,
costs a few points of top-1 error each, removing both costs about thirty, so "having
a minimum depth to the network, rather than any individual section, is vital to the
model's performance" (Sec. 6); resizing the dense layers changes little, widening
the middle conv layers helps.

:data:`VARIANTS` makes the same changes to the ZF-style mini
(:func:`zfcourse.models.mini_zfnet`); :func:`trained` trains each on the world's
images with the recipe and budget of the mini itself (the synthetic world's
:data:`zfcourse.worlds.RECIPE`), so that the rows differ in the network alone, and
:func:`errors` measures a row of the table. The paper's removals were made to its
replication of AlexNet, its resizings to its own network (:data:`PAPER_TABLE_3`
keeps the two blocks apart); here every change is made to the ZF-style mini.
"""
from __future__ import annotations

import functools

from torch import nn

from . import minis, worlds
from .infra.checks import count
from .models import MINI_HIDDEN, MINI_WIDTHS, mini_zfnet
from .train import History, predict, top_k_errors, train_cached

__all__ = ["VARIANTS", "BASELINE", "PAPER_TABLE_3", "TRAIN_IMAGES", "build", "trained", "errors"]

BASELINE = "ZF-style mini (as trained above)"
# The widened middle layers take the paper's factors (384, 384, 256 -> 512, 1024, 512:
# 4/3, 8/3 and 2 times), rounded to multiples of 16.
VARIANTS = {
    BASELINE: dict(middle=MINI_WIDTHS[2:], hidden=MINI_HIDDEN),
    "removed layers 6, 7": dict(middle=MINI_WIDTHS[2:], hidden=()),
    "removed layers 3, 4": dict(middle=MINI_WIDTHS[4:], hidden=MINI_HIDDEN),
    "removed layers 3, 4, 6, 7": dict(middle=MINI_WIDTHS[4:], hidden=()),
    "layers 6, 7: half the units": dict(middle=MINI_WIDTHS[2:], hidden=(128, 128)),
    "layers 6, 7: twice the units": dict(middle=MINI_WIDTHS[2:], hidden=(512, 512)),
    "layers 3, 4, 5: 176, 336, 192 maps": dict(middle=(176, 336, 192), hidden=MINI_HIDDEN),
}
# ImageNet 2012 error (%): train top-1, val top-1, val top-5, as printed in Table 3.
PAPER_TABLE_3 = {
    "the paper's replication of AlexNet (1 convnet)": {
        "as published": (35.1, 40.5, 18.1),
        "removed layers 3, 4": (41.8, 45.4, 22.1),
        "removed layer 7": (27.4, 40.0, 18.4),
        "removed layers 6, 7": (27.4, 44.8, 22.4),
        "removed layers 3, 4, 6, 7": (71.1, 71.3, 50.1),
        "layers 6, 7: 2048 units": (40.3, 41.7, 18.8),
        "layers 6, 7: 8192 units": (26.8, 40.0, 18.1),
    },
    "the paper's own network (Fig. 3)": {
        "as published": (33.1, 38.4, 16.5),
        "layers 6, 7: 2048 units": (38.2, 40.2, 17.6),
        "layers 6, 7: 8192 units": (22.0, 38.8, 17.0),
        "layers 3, 4, 5: 512, 1024, 512 maps": (18.8, 37.5, 16.0),
        "layers 6, 7: 8192 units and layers 3, 4, 5: 512, 1024, 512 maps": (10.0, 38.3, 16.9),
    },
}
# Training error is measured on this many of the training images (drawn evenly), in eval
# mode: the same network the validation error sees, at a few seconds per variant.
TRAIN_IMAGES = 4000


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(map(repr, VARIANTS))}")


def build(variant: str, num_classes: int) -> nn.Sequential:
    """The ZF-style mini with ``variant``'s layers (a key of :data:`VARIANTS`), untrained."""
    _check_variant(variant)
    return mini_zfnet(num_classes, **VARIANTS[variant])


def trained(world, variant: str, seed: int = 0, progress: bool = True) -> tuple[nn.Module, History]:
    """``variant`` trained in ``world`` with the minis' recipe and budget, its initial
    weights and batch order drawn under ``seed``; the baseline under seed 0 is the
    ZF-style mini of :func:`zfcourse.minis.trained` itself. Another seed gives another
    run of the same network: the spread between the two is the noise of one run. Cached."""
    _check_variant(variant)
    seed = count(seed, "seed", minimum=0)
    if variant == BASELINE and seed == 0:
        return minis.trained(world, "zfnet", progress=progress)
    train_set, val_set = minis.training_data(world)
    make = functools.partial(build, variant, len(train_set.classes))
    return train_cached(make, train_set, val_set, seed=seed, device=world.device, progress=progress,
                        **worlds.RECIPE)


def errors(model: nn.Module, train_set, val_set, train_images: int = TRAIN_IMAGES) -> dict[str, float]:
    """The three columns of Table 3 as shares: ``train top-1`` (on ``train_images`` of the
    training images, drawn evenly), ``val top-1`` and ``val top-5``."""
    train_probs, train_labels = predict(model, minis.subset(train_set, train_images), progress=False)
    val_probs, val_labels = predict(model, val_set, progress=False)
    val = top_k_errors(val_probs, val_labels, ks=(1, 5))
    return {"train top-1": top_k_errors(train_probs, train_labels, ks=(1,))[1],
            "val top-1": val[1], "val top-5": val[5]}
