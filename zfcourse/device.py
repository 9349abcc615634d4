"""Where the course computes: CUDA when present, else the CPU."""
from __future__ import annotations

import contextlib

import torch
from torch import nn


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model: nn.Module) -> torch.device | None:
    p = next(model.parameters(), None)
    return p.device if p is not None else None


def compute_device(model: nn.Module) -> torch.device:
    """The model's own device if it is an accelerator, else the default one."""
    current = model_device(model)
    return current if current is not None and current.type != "cpu" else default_device()


@contextlib.contextmanager
def placed(model: nn.Module, device: torch.device):
    """The model on ``device`` in eval mode (dropout off), put back afterwards."""
    home, training = model_device(model), model.training
    model.to(device).eval()
    try:
        yield
    finally:
        model.train(training)
        if home is not None:
            model.to(home)
