"""Small builders the test files share (fixtures that use them live in conftest.py)."""
from types import SimpleNamespace

import torch
from torch import nn

from zfcourse.data import synthetic


def seeded(make, seed=0, he=False, double=False):
    """``make()`` under a fixed seed, in eval mode. ``he=True`` re-draws every conv and
    dense layer He-normal with N(0, 0.1) biases: with the paper's small initial weights
    most deep units of an untrained network are zero, and comparisons of zeros test nothing."""
    torch.manual_seed(seed)
    model = make()
    if he:
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.normal_(m.bias, 0.0, 0.1)
    return (model.double() if double else model).eval()


def stand_in_world(model):
    """The parts of a World that figures and explorers use, around ``model`` (64 px input)."""
    return SimpleNamespace(model=model, device=torch.device("cpu"), denormalize=synthetic.denormalize)
