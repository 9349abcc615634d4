"""Compact images for the atlas: tiles in [0, 1] -> JPEG or WebP strips and sprite sheets.

The atlas (:mod:`zfcourse.atlas`) stores each unit's nine patches and nine
projections (Zeiler & Fergus 2014, Fig. 2) as two horizontal *strips*, tile
``j`` at ``x = j * tile``, and each layer's thumbnails as one *sheet*, cell
``i`` at row ``i // columns``, column ``i % columns``. Tiles larger than
:data:`TILE` pixels are scaled down (antialiased); smaller ones keep their
pixels, and the page scales them up without smoothing. NaN (a frame pixel
outside the image or the box, see :mod:`zfcourse.framing`) is drawn white.
Images are JPEG (quality :data:`QUALITY`: it encodes ten times faster than
WebP at about 1.5 times the size), except those whose tiles have at most
:data:`LOSSLESS` pixels a side, which are lossless WebP: at that size lossy
coding would blur every pixel. :func:`encode` says which.
"""
from __future__ import annotations

import io

import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["TILE", "THUMB", "LOSSLESS", "QUALITY", "to_tiles", "encode", "strip", "sheet"]

TILE = 128       # largest stored side of a patch or projection tile, in pixels
THUMB = 48       # side of a thumbnail tile
LOSSLESS = 16    # tiles up to this side are stored without loss
QUALITY = 85     # JPEG


def to_tiles(x: torch.Tensor, side: int = TILE, enlarge: bool = False) -> torch.Tensor:
    """Images ``[M, 3, h, w]`` in [0, 1] (NaN: white) -> uint8 ``[M, 3, h', w']``: the larger
    side scaled down to ``side`` with antialiasing if it is larger; with ``enlarge``, a
    smaller one scaled up by repeating pixels (thumbnails of small tiles)."""
    x = x.float().nan_to_num(1.0).clamp(0, 1)
    h, w = x.shape[-2:]
    scale = side / max(h, w)
    if scale < 1:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    elif enlarge and scale >= 2:
        x = F.interpolate(x, scale_factor=int(scale), mode="nearest")
    return (x * 255).round().to(torch.uint8)


def encode(image: torch.Tensor) -> tuple[bytes, str]:
    """uint8 ``[3, H, W]`` -> ``(bytes, extension)``: lossless WebP for small tiles, else JPEG."""
    pil = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    buf = io.BytesIO()
    if min(image.shape[-2:]) <= LOSSLESS:
        pil.save(buf, "WEBP", lossless=True, method=4)
        return buf.getvalue(), "webp"
    pil.save(buf, "JPEG", quality=QUALITY)
    return buf.getvalue(), "jpg"


def strip(tiles: torch.Tensor) -> torch.Tensor:
    """uint8 tiles ``[k, 3, h, w]`` -> one row ``[3, h, k * w]``, tile ``j`` at ``x = j * w``."""
    return tiles.permute(1, 2, 0, 3).reshape(tiles.shape[1], tiles.shape[2], -1)


def sheet(cells: torch.Tensor, columns: int, background: int = 255) -> torch.Tensor:
    """uint8 cells ``[n, 3, h, w]`` -> ``[3, rows * h, columns * w]``, cell ``i`` at row
    ``i // columns`` and column ``i % columns``; the unused end of the last row is ``background``."""
    n, c, h, w = cells.shape
    rows = -(-n // columns)
    padded = cells.new_full((rows * columns, c, h, w), background)
    padded[:n] = cells
    return padded.view(rows, columns, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, columns * w)
