"""The input scale of a world's models: ``x -> (x - mean) / std`` per channel.

One formula for every dataset of the course: ImageNet's statistics for torchvision's
AlexNet and the minis trained on Imagenette, and fixed, round constants for the
synthetic world (mean 0.5, std 0.25 in every channel: they map [0, 1] to [-2, 2]
and do not move when the generator or the split size changes).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Normalization", "IMAGENET", "SYNTHETIC"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``mean`` and ``std`` of images in [0, 1]."""
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        return mean, torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or [0, 1] float) images ``[..., C, H, W]`` -> model input."""
        x = images.float() / 255 if images.dtype == torch.uint8 else images
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> images in [0, 1]."""
        mean, std = self._stats(x)
        return (x * std + mean).clamp(0, 1)


IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SYNTHETIC = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
