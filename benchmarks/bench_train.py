"""Training speed of the two mini networks, with and without batch normalisation.

For each of mini AlexNet (11x11/4 first layer) and mini ZFNet (7x7/2), the
images per second of :func:`zfcourse.train.train` over the same synthetic
images and batch size, once with the synthetic world's recipe (``batchnorm=True``,
folded at the end) and once with the paper's (no normalisation, filters
renormalised to RMS 0.1 after every step), and once plain (neither, to show
what renormalisation costs). Ratios are against mini AlexNet with
batch normalisation. One epoch is timed after a one-batch warm-up, the best of ``--repeats``; the
speed does not depend on what the network learns.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py              # about a minute on one CPU core
    python benchmarks/bench_train.py --images 4096 --repeats 3     # steadier figures
"""
from __future__ import annotations

import argparse
import time

import torch

from zfcourse.infra.device import default_device
from zfcourse.models import mini_alexnet, mini_zfnet
from zfcourse.data.synthetic import SyntheticImages
from zfcourse.train import train

RECIPES = {
    "batchnorm (folded)": dict(batchnorm=True),
    "renorm 0.1, no BN": dict(renorm_radius=0.1),
    "plain SGD": dict(),
}
CASES = [(name, make, recipe) for name, make in (("mini_alexnet", mini_alexnet), ("mini_zfnet", mini_zfnet))
         for recipe in RECIPES]


def images_per_second(make, data, warmup, batch_size, device, repeats, options) -> float:
    best = float("inf")
    for _ in range(repeats):
        torch.manual_seed(0)
        model = make(len(data.classes))
        train(model, warmup, epochs=1, batch_size=batch_size, device=device, progress=False, **options)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        train(model, data, epochs=1, batch_size=batch_size, device=device, progress=False, **options)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return len(data) / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else default_device()
    data = SyntheticImages("train", args.images, seed=1)
    warmup = SyntheticImages("train", args.batch_size, seed=2)
    print(f"device {device}, {torch.get_num_threads()} thread(s), {args.images} images of 64 px, batch {args.batch_size}")
    print(f"{'model':<14}{'recipe':<22}{'images/s':>10}{'ratio':>8}")
    base = None
    for name, make, recipe in CASES:
        rate = images_per_second(make, data, warmup, args.batch_size, device, args.repeats, RECIPES[recipe])
        base = base or rate
        print(f"{name:<14}{recipe:<22}{rate:>10.0f}{rate / base:>8.2f}")


if __name__ == "__main__":
    main()
