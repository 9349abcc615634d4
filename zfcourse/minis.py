"""The AlexNet-style and ZF-style networks of chapter 5, trained in the current world.

Sec. 4.1 of the paper changes AlexNet's first layer from 11x11 filters at stride 4
to 7x7 at stride 2 (and layer 2's stride to 2), and renormalises every conv filter
whose RMS exceeds a fixed radius. To compare the two first layers fairly,
:func:`trained` trains both mini networks (:func:`zfcourse.models.mini_alexnet`,
:func:`zfcourse.models.mini_zfnet`) on the same images with the same recipe and
budget: the synthetic world's recipe (:data:`zfcourse.worlds.RECIPE`), keeping
the weights after the epochs of :data:`zfcourse.worlds.SNAPSHOTS` for the
feature-evolution figure (Fig. 4).

* synthetic world: the world's own training images; the two networks are the
  world's cached ones (:func:`zfcourse.worlds.synthetic_model`);
* imagenet world: Imagenette's training split at 64 px
  (:func:`zfcourse.data.imagenette.imagenette`), minutes on a GPU, a few more on a CPU.

:func:`trained_plain` trains without normalisation layers, as the paper did, so
that filter renormalisation means something: plain SGD from the paper's
filters in layer 1 (normal, mean 0, standard deviation 1e-2). Above layer 1 it draws the initial weights
with He et al.'s (2015) scale instead: with 1e-2 everywhere the signal shrinks
by about ten times per layer and eight layers do not leave chance level in a
CPU budget (:data:`PLAIN` has the recipe). :func:`trained_paper` trains the same
way with the paper's own recipe (:data:`PAPER_RECIPE`: its learning rate, momentum and
radius, the radius on every conv layer) on all the training images, for Fig. 6 under
the paper's conditions.
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from . import atlas, worlds
from .infra.checks import count
from .models import sequence
from .train import History, train_cached

__all__ = ["ARCHS", "PLAIN", "PLAIN_IMAGES", "PAPER_RECIPE", "RENORM_RADIUS", "IMAGE_SIZE", "training_data",
           "as_world", "trained", "he_above_first", "subset", "trained_plain", "trained_paper"]

ARCHS = tuple(worlds.ARCHS)
IMAGE_SIZE = 64
# A short run of plain SGD (no normalisation layers) on at most PLAIN_IMAGES images.
PLAIN = dict(epochs=3, lr=0.03, momentum=0.9, weight_decay=5e-4, batch_size=128, warmup_epochs=0.5)
PLAIN_IMAGES = 8000
# The paper's radius, 1e-1, is in the scale of its own input pixels; ours are
# normalised to about unit variance. 0.03 binds here: about twice the median RMS
# that layer-1 filters reach in the PLAIN run without renormalisation, below the largest.
RENORM_RADIUS = 0.03
# Sec. 3 of the paper: SGD with momentum 0.9, learning rate 1e-2, every conv filter
# renormalised to RMS 0.1 when it exceeds it; weight decay 5e-4 is the one AlexNet used.
# The paper anneals by hand over 70 epochs; we warm up and follow a cosine schedule.
PAPER_RECIPE = dict(epochs=12, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=128, warmup_epochs=0.5,
                    renorm_radius=0.1)


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)}")


def training_data(world):
    """``(train, val)`` images of the world for training the mini networks (64 px, tensor-backed)."""
    return world.mini_data()


def as_world(world, model: nn.Module):
    """``world`` with a mini ``model`` and the 64 px validation images it was trained
    with, for the functions that take a world (top-9 figures, projections)."""
    _, val = training_data(world)
    return dataclasses.replace(world, model=model, val=val, classes=val.classes, image_size=IMAGE_SIZE,
                               normalize=val.normalize, denormalize=val.denormalize, make_model=None,
                               info={"model": f"a mini network trained in the {world.name} world at 64 px"})


def trained(world, arch: str, progress: bool = True) -> tuple[nn.Module, History]:
    """Mini ``arch`` (``alexnet`` or ``zfnet``) trained in ``world`` with the synthetic
    world's recipe; returns ``(model, history)``, ``history.snapshots`` holding the
    weights after each epoch of :data:`zfcourse.worlds.SNAPSHOTS`. Cached."""
    _check_arch(arch)
    return world.mini_trainer(arch, progress=progress)


@torch.no_grad()
def he_above_first(model: nn.Module) -> nn.Module:
    """Re-draw every conv and dense layer's weights after the first from
    N(0, 2 / fan_in) (He et al., 2015), biases zero; the first layer keeps its own."""
    layers = [m for m in sequence(model) if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers[1:]:
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(m.bias)
    return model


def subset(data, n: int):
    """``n`` of the images (all if there are fewer), drawn evenly from a fixed shuffle
    (Imagenette is sorted by class), as a dataset of the same kind."""
    if count(n, "n") >= len(data):
        return data
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n].sort().values
    part = copy.copy(data)
    part.images, part.labels = data.images[idx], data.labels[idx]
    if getattr(data, "masks", None) is not None:
        part.masks = data.masks[idx]
    return part


def trained_plain(world, arch: str, renorm_radius: float | None,
                  progress: bool = True) -> tuple[nn.Module, History]:
    """Mini ``arch`` trained with plain SGD (:data:`PLAIN`, no normalisation layers) on
    :data:`PLAIN_IMAGES` of the world's training images, with filter renormalisation
    of layer 1 at ``renorm_radius`` after every step, or none. (Only layer 1 keeps
    the paper's initial scale, to which the paper's radius is relative; the layers
    above start at He et al.'s larger one.) Returns ``(model, history)``;
    ``history.rescaled`` counts the rescalings per epoch. Cached."""
    cap = {} if renorm_radius is None else {"renorm_radius": renorm_radius, "renorm_layers": ("conv1",)}
    return _plain(world, arch, PLAIN_IMAGES, dict(PLAIN, **cap), progress)


def trained_paper(world, arch: str, progress: bool = True) -> tuple[nn.Module, History]:
    """Mini ``arch`` trained with the paper's recipe (:data:`PAPER_RECIPE`): plain SGD, no
    normalisation layers, on all of the world's training images, every conv filter
    renormalised at the paper's radius after every step; initial weights as in
    :func:`trained_plain`. Returns ``(model, history)``. Cached."""
    return _plain(world, arch, None, PAPER_RECIPE, progress)


def _plain(world, arch: str, images: int | None, recipe: dict, progress: bool):
    _check_arch(arch)
    train_set, val_set = training_data(world)
    if images is not None:
        train_set = subset(train_set, images)

    def make():
        return he_above_first(worlds.ARCHS[arch](len(train_set.classes)))

    return train_cached(make, train_set, val_set, device=world.device, progress=progress, **recipe)


def atlas_networks(world) -> list[atlas.Network]:
    """The networks the atlas shows in ``world``: the world's own network first, then the
    mini AlexNet and mini ZFNet of chapter 5 not already shown (in the imagenet world
    they are trained on Imagenette at 64 px, and cached, by chapter 5)."""
    own = worlds.own_network(world)
    nets = [own]
    for arch in ARCHS:
        name = f"mini-{arch}"
        if name == own.name:
            continue
        model, _ = trained(world, arch, progress=False)
        mini = as_world(world, model)
        shared = mini.val is world.val      # the synthetic minis see the world's own images
        dataset = own.dataset if shared else \
            f"Imagenette validation set, {len(mini.val):,} images at {mini.image_size} px"
        nets.append(atlas.Network(name, f"mini {'ZFNet' if arch == 'zfnet' else 'AlexNet'}", model,
                                  mini.val, mini.classes, mini.denormalize, world.name, dataset))
    return nets
