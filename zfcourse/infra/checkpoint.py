"""Training state that survives an interrupted run: checkpoints and random-number states.

A checkpoint holds everything that decides the rest of a training run: the
network's and optimiser's and scheduler's state dicts, the states of every
random-number generator it draws from (the global CPU and CUDA generators for
dropout, the generator of the batch order), the epochs done and the history so
far. Resuming from it continues the exact computation an uninterrupted run would
have done, so the final weights are bit for bit the same (on the same device).

The file is written with :func:`zfcourse.infra.cache.save_atomic` (an interrupted save
never replaces a good checkpoint) and read with ``weights_only=True``: it holds
tensors, dicts, lists, numbers and strings only; generator states are uint8
tensors. The training recipe is stored with it; a checkpoint made with another
recipe is refused instead of silently continued.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .cache import load, save_atomic

__all__ = ["rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint"]

_FIELDS = {"recipe", "epoch", "net", "optimizer", "scheduler", "rng", "history"}


def rng_state(generator: torch.Generator | None = None) -> dict:
    """The global CPU (and CUDA, where present) generator states and ``generator``'s, as tensors."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None:
        generator.set_state(state["generator"])


def save_checkpoint(path: str | Path, *, recipe: dict, epoch: int, net: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler, generator: torch.Generator,
                    history: dict) -> Path:
    """Write the training state after ``epoch`` epochs atomically to ``path``.

    Tensors go to the CPU so that a checkpoint made on a GPU loads anywhere.
    """
    def cpu(obj):
        if torch.is_tensor(obj):
            return obj.detach().cpu()
        if isinstance(obj, dict):
            return {k: cpu(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [cpu(v) for v in obj]
        return obj

    return save_atomic({
        "recipe": recipe, "epoch": epoch, "net": cpu(net.state_dict()),
        "optimizer": cpu(optimizer.state_dict()), "scheduler": scheduler.state_dict(),
        "rng": rng_state(generator), "history": cpu(history),
    }, path)


def load_checkpoint(path: str | Path, recipe: dict) -> dict | None:
    """The checkpoint at ``path``, or None when there is none or it cannot be read.

    An unreadable file gives a warning and None (training starts afresh); a
    checkpoint of another recipe raises a ValueError naming the differences, since
    continuing it would mix two runs.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        ckpt = load(path)
        if not isinstance(ckpt, dict) or not _FIELDS <= set(ckpt):
            raise KeyError(f"not a training checkpoint (needs {', '.join(sorted(_FIELDS))})")
    except Exception as e:  # a partial or foreign file is never trusted
        warnings.warn(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); training from the start", stacklevel=3)
        return None
    diff = {k: (ckpt["recipe"].get(k), v) for k, v in recipe.items() if ckpt["recipe"].get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: {old!r} in the file, {new!r} now" for k, (old, new) in diff.items())
        raise ValueError(f"checkpoint {path} was made with another recipe ({detail}); delete it or use another path")
    return ckpt
