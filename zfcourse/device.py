"""Where the course computes: CUDA when present, else the CPU."""
import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
