"""Reading large pictures (zfcourse.data) next to the plain way of reading them.

For a large JPEG and a large PNG, time per picture and the decoded size held in memory:

* plain: ``Image.open(path).convert("RGB")``, then the world's preprocessing, as
  torchvision's image loaders do;
* data:  ``data.load_images``: JPEGs decoded at reduced scale (libjpeg DCT scaling), other
  formats box-reduced after decoding, then the same preprocessing.

Both for the imagenet world's preprocessing (shorter side 256, centre 224) and the
synthetic world's (64). The ratio is plain / data (above 1: data is faster).

    python benchmarks/bench_data.py                 # about half a minute on one CPU core
    python benchmarks/bench_data.py --megapixels 12
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from torchvision.models import AlexNet_Weights
from torchvision.transforms.functional import center_crop, pil_to_tensor, resize

from zfcourse import data


def picture(megapixels: float) -> Image.Image:
    """A photo-like picture: smooth gradients plus fine texture (JPEG cannot shrink it to nothing)."""
    h = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    w = h * 4 // 3
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 40) * np.cos(yy / 55)], axis=-1)
    noise = rng.normal(0, 0.05, (h, w, 1)).astype(np.float32)
    return Image.fromarray((255 * np.clip(base + noise, 0, 1)).astype(np.uint8))


def worlds() -> dict[str, SimpleNamespace]:
    def small(image):
        return center_crop(resize(pil_to_tensor(image), 64, antialias=True), 64).float() / 255

    return {"imagenet (224)": SimpleNamespace(preprocess=AlexNet_Weights.IMAGENET1K_V1.transforms(), image_size=224),
            "synthetic (64)": SimpleNamespace(preprocess=small, image_size=64)}


def timed(fn, repeat: int) -> float:
    fn()                                                # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=24)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    photo = picture(args.megapixels)
    with tempfile.TemporaryDirectory() as folder:
        files = {"JPEG": Path(folder) / "photo.jpg", "PNG": Path(folder) / "photo.png"}
        photo.save(files["JPEG"], quality=90)
        photo.save(files["PNG"], compress_level=1)
        print(f"{photo.size[0]} x {photo.size[1]} pixels ({args.megapixels:g} MP); median of {args.repeat} runs\n")
        print(f"{'format':6s} {'world':16s} {'plain s':>8s} {'data s':>8s} {'ratio':>6s}   decoded: plain -> data"
              f"   mean |difference|")
        for fmt, path in files.items():
            for name, world in worlds().items():
                def plain():
                    with Image.open(path) as image:
                        return world.preprocess(image.convert("RGB"))

                def ours():
                    return data.load_images(path, world=world, progress=False)

                with Image.open(path) as image:       # what load_images decodes (PNG: all of it)
                    image.draft(None, (2 * world.image_size,) * 2)
                    held = image.size
                t_plain, t_ours = timed(plain, args.repeat), timed(ours, args.repeat)
                diff = (ours()[0] - plain()).abs().mean().item()
                if not diff <= 0.02:   # resampling differences only (model-input units)
                    raise SystemExit(f"disagreement: {fmt} in {name}: mean |difference| {diff:.3f}")
                print(f"{fmt:6s} {name:16s} {t_plain:8.3f} {t_ours:8.3f} {t_plain / t_ours:6.1f}   "
                      f"{photo.size[0] * photo.size[1] * 3 / 1e6:.0f} MB -> {held[0] * held[1] * 3 / 1e6:.1f} MB"
                      f"   {diff:.4f}")


if __name__ == "__main__":
    main()
