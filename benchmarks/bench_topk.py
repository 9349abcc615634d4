"""Speed of the top-k search (zfcourse.topk) next to its limit and to a naive loop.

For each case, over the same images and batch size:

* forward:  the network run to the layer and no further, nothing kept (the limit);
* top-k:    ``top_activations`` for all channels (one pass, running top-k per channel);
* naive:    one image at a time, a Python heap per channel (on a subset: it is slow).

The search's overhead is ``top-k / forward - 1``; the target is at most 10%.
Random weights and random images: the speed does not depend on what the net learnt.

    python benchmarks/bench_topk.py                  # about a minute on one CPU core
    python benchmarks/bench_topk.py --alexnet 0      # skip the 224 px AlexNet case
"""
from __future__ import annotations

import argparse
import heapq
import time

import torch

from zfcourse.infra.device import default_device
from zfcourse.models import alexnet, layer_index, mini_alexnet, sequence
from zfcourse.topk import top_activations


def forward_only(modules, images, batch_size, device):
    with torch.no_grad():
        for x in images.split(batch_size):
            x = x.to(device)
            for m in modules:
                x = m(x)
    if device.type == "cuda":
        torch.cuda.synchronize()


def naive(modules, images, k, device):
    """What one would write first: an image at a time, a heap of (value, -index) per channel."""
    heaps = None
    with torch.no_grad():
        for n, image in enumerate(images):
            x = image[None].to(device)
            for m in modules:
                x = m(x)
            best = x[0].flatten(1).amax(1).tolist()
            heaps = heaps or [[] for _ in best]
            for heap, v in zip(heaps, best):
                (heapq.heappush if len(heap) < k else heapq.heappushpop)(heap, (v, -n))
    return heaps


def agree(model, layer, modules, images, k, batch_size, device) -> None:
    """Stop with an error unless the search finds the naive loop's top-k values."""
    heaps = naive(modules, images, k, device)
    expected = torch.tensor([sorted((v for v, _ in heap), reverse=True) for heap in heaps])
    found = top_activations(model, images, layer, k=k, batch_size=batch_size, device=device,
                            progress=False).values
    if not expected.max() > 0:
        raise SystemExit(f"no unit of {layer} fires: agreement of zeros would prove nothing")
    diff = (found - expected).abs().max().item()
    if not diff <= 1e-4 * max(1.0, expected.abs().max().item()):
        raise SystemExit(f"disagreement: top-k values of {layer} differ from the naive loop's by {diff:.2e}")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name, model, layer, images, batch_size, k, repeats, n_naive, device):
    model.to(device).eval()
    modules = sequence(model)[: layer_index(model, layer) + 1]
    forward_only(modules, images[:batch_size], batch_size, device)          # warm-up
    fwd, top = [], []
    for _ in range(repeats):   # interleaved, best of: the machine is shared
        fwd.append(timed(lambda: forward_only(modules, images, batch_size, device)))
        top.append(timed(lambda: top_activations(model, images, layer, k=k, batch_size=batch_size,
                                                 device=device, progress=False)))
    loop = timed(lambda: naive(modules, images[:n_naive], k, device)) if n_naive else float("nan")
    if n_naive:
        agree(model, layer, modules, images[:n_naive], k, batch_size, device)
    n = len(images)
    f, t = min(fwd), min(top)
    print(f"{name:<28} {layer:<6} {n:>6} {n / f:>12.0f} {n / t:>12.0f} {100 * (t / f - 1):>+9.1f}% "
          f"{n_naive / loop:>12.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="64 px images for mini_alexnet")
    parser.add_argument("--alexnet", type=int, default=200, help="224 px images for AlexNet (0: skip)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--naive", type=int, default=200, help="images for the one-at-a-time loop")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (0: torch's default); one by default because on a shared "
                             "machine OpenMP threads wait for each other and the timings measure the scheduler")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else default_device()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size}, top-{args.k}, best of {args.repeats}; images/s:")
    print(f"{'model':<28} {'layer':<6} {'images':>6} {'forward':>12} {'top-k':>12} {'overhead':>10} "
          f"{'naive loop':>12}")
    small = torch.rand(args.n, 3, 64, 64)
    mini = mini_alexnet(10)
    for layer in ("conv2", "conv5"):
        bench("mini_alexnet(10), 64 px", mini, layer, small, args.batch_size, args.k, args.repeats,
              min(args.naive, args.n), device)
    if args.alexnet:
        big = torch.rand(args.alexnet, 3, 224, 224)
        bench("AlexNet (random), 224 px", alexnet(), "conv5", big, args.batch_size, args.k,
              args.repeats, min(args.naive, args.alexnet) // 4, device)


if __name__ == "__main__":
    main()
