"""Where the course computes (CUDA when present, else the CPU), in which mode, and under
which random state."""
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
def placed(model: nn.Module, device: torch.device | None = None):
    """The model on ``device`` (None: where it is) in eval mode (dropout off, batch-norm
    statistics frozen), put back as it was afterwards, also when the body raises."""
    home, training = model_device(model), model.training
    model.to(device or home or "cpu").eval()
    try:
        yield
    finally:
        model.train(training)
        if home is not None:
            model.to(home)


@contextlib.contextmanager
def seeded(seed: int):
    """The global generators (CPU and every CUDA device) seeded with ``seed`` inside the
    block, and the caller's random state put back after it: seeded weights and dropout
    without a side effect on the caller's own draws."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
