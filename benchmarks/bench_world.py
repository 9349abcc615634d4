"""The synthetic world's costs: image generation rate and mini-network training.

    python benchmarks/bench_world.py            # generation only (seconds)
    python benchmarks/bench_world.py --train    # also trains both minis in a fresh cache (minutes)

Targets (foundation issue): at least 2,000 images/s on one core; each mini network at
least 90% validation accuracy in at most 2 minutes of training on a 2-core CPU.
"""
import argparse
import os
import tempfile
import time

import torch

from zfcourse import worlds
from zfcourse.data import synthetic


def generation_rate(n: int = 4000, repeats: int = 3) -> float:
    torch.set_num_threads(1)
    synthetic.render(range(64))  # warm-up: noise bank, imports
    best = min(_timed(lambda: synthetic.render(range(n), "train", seed=0)) for _ in range(repeats))
    torch.set_num_threads(os.cpu_count() or 1)
    return n / best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", action="store_true", help="train both minis in a temporary cache")
    args = parser.parse_args()
    rate = generation_rate()
    print(f"synthetic images (64 px), one core: {rate:,.0f} images/s  (target 2,000: {rate / 2000:.1f}x)")
    if args.train:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["ZFCOURSE_CACHE"] = tmp
            for arch in worlds.ARCHS:
                t = time.perf_counter()
                _, meta = worlds.synthetic_model(arch, progress=False)
                total = time.perf_counter() - t
                print(f"mini {arch:7s}: val accuracy {100 * meta['val_accuracy']:.1f}% after "
                      f"{meta['train_seconds']:.0f} s of training ({total:.0f} s with data), "
                      f"{torch.get_num_threads()} threads  (target 90% in 120 s)")


if __name__ == "__main__":
    main()
