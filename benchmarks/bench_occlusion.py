"""Occlusion maps (zfcourse.occlusion) next to Captum's ``Occlusion`` and a one-copy-per-forward loop.

Task: for a batch of images, slide a grey square (``--window`` of the image side, moved
by ``--stride``, the square always inside the image) and record the drop in the true
class's probability at every position: Fig. 7 (d) of the paper.

* zfcourse:  ``occlusion_map`` (``batch_size`` occluded copies per forward pass; in the first
             layers only the window of each map that the occluder reaches is recomputed), at
             the best of a few batch sizes, and with ``local=False`` (the whole network for
             every copy) at the best one;
* Captum:    ``captum.attr.Occlusion`` on ``softmax(model(x))`` with the same window, stride,
             fill and targets, at the best of a few ``perturbations_per_eval``, with the images
             as given (contiguous) and in channels-last layout (faster on a CPU); skipped when
             Captum is not installed: it is not a dependency of the course;
* loop:      one occluded copy per forward pass, as one writes it first (on a subset of
             the images, extrapolated).

Captum reports a pixel map: each pixel the mean drop over the windows that cover it.
``Occlusion.to_pixels(result.drop)`` gives the same map from ours, and the loop's grid is
compared with ours directly; the output gives the largest absolute differences.

Random weights (He initialisation, fixed seed, so that the probabilities vary with the
input) and random images: the speed does not depend on what the net learnt, and the
benchmark needs no download.

    python benchmarks/bench_occlusion.py                # a few minutes on one CPU core
    python benchmarks/bench_occlusion.py --alexnet 0    # skip the 224 px AlexNet case
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from zfcourse.infra.device import default_device
from zfcourse.models import alexnet, mini_alexnet
from zfcourse.occlusion import fill_value, occluded, occlusion_map


def he_init(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.normal_(m.bias, 0.0, 0.1)
    return model.eval()


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def best_of(fn, repeats: int, device: torch.device):
    times, out = [], None
    for _ in range(repeats):
        start = clock(device)
        out = fn()
        times.append(clock(device) - start)
    return min(times), out


@torch.no_grad()
def loop(model, images, target, window, stride, device):
    """One occluded copy per forward pass: the drop grid [N, gh, gw]."""
    H, W = images.shape[-2:]
    fill = fill_value(0.0, images.shape[1], device)
    rows, cols = range(0, H - window + 1, stride), range(0, W - window + 1, stride)
    out = torch.empty(len(images), len(rows), len(cols))
    for n, (x, t) in enumerate(zip(images.to(device), target.tolist())):
        base = model(x[None]).softmax(1)[0, t]
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                copy = occluded(x[None], torch.tensor([r], device=device), torch.tensor([c], device=device),
                                (window, window), fill)
                out[n, i, j] = base - model(copy).softmax(1)[0, t]
    return out


def agree(diff: float, tolerance: float, what: str) -> None:
    """Stop with an error when two answers disagree: a fast wrong answer is no result."""
    if not diff <= tolerance:
        raise SystemExit(f"disagreement: {what} differ by {diff:.2e} (tolerance {tolerance:.0e})")


def captum_occlusion():
    try:
        from captum.attr import Occlusion
    except ImportError:
        return None
    return Occlusion


def bench(name, model, images, window, stride, repeats, n_loop, batch_sizes, per_eval, device):
    model.to(device).eval()
    x = images.to(device)
    with torch.no_grad():
        target = model(x).argmax(1)
    H = images.shape[-1]
    positions = ((H - window) // stride + 1) ** 2
    copies = len(images) * positions
    print(f"\n{name}: {len(images)} images, window {window}, stride {stride}: {positions} positions, "
          f"{copies:,} occluded copies")
    print(f"  {'method':<34}{'seconds':>9}{'copies/s':>10}{'vs zfcourse':>13}  max |difference|")

    ours = {}
    for b in batch_sizes:
        ours[b] = best_of(lambda: occlusion_map(model, x, target, window, stride, batch_size=b, device=device),
                          repeats, device)
    b = min(ours, key=lambda k: ours[k][0])
    t_ours, result = ours[b]
    pixels = result.to_pixels(result.drop)
    for k, (t, _) in sorted(ours.items()):
        print(f"  {'zfcourse, batch_size=' + str(k):<34}{t:>9.2f}{copies / t:>10.0f}{t / t_ours:>12.2f}x")
    t_plain, plain = best_of(lambda: occlusion_map(model, x, target, window, stride, batch_size=b, local=False,
                                                   device=device), repeats, device)
    diff = (plain.probability - result.probability).abs().max().item()
    print(f"  {'zfcourse, local=False, ' + str(b):<34}{t_plain:>9.2f}{copies / t_plain:>10.0f}"
          f"{t_plain / t_ours:>12.2f}x  {diff:.1e} (grids)")
    agree(diff, 1e-4, "the windowed and the plain pass's probabilities")
    t_act, _ = best_of(lambda: occlusion_map(model, x, target, window, stride, layer="conv5", batch_size=b,
                                             device=device), repeats, device)
    print(f"  {'zfcourse + conv5 map, ' + str(b):<34}{t_act:>9.2f}{copies / t_act:>10.0f}{t_act / t_ours:>12.2f}x")

    Occlusion = captum_occlusion()
    if Occlusion is None:
        print("  Captum: not installed, skipped (pip install captum to compare)")
    else:
        occ = Occlusion(lambda inp: model(inp).softmax(1))
        for layout in ("contiguous", "channels_last"):
            inp = x.contiguous(memory_format=getattr(torch, layout + "_format" if layout == "contiguous" else layout))
            for k in per_eval:
                def run():
                    with torch.no_grad():
                        return occ.attribute(inp, sliding_window_shapes=(3, window, window),
                                             strides=(3, stride, stride), baselines=0.0, target=target,
                                             perturbations_per_eval=k)
                t, attr = best_of(run, repeats, device)
                diff = (attr[:, 0].cpu() - pixels).abs().max().item()
                label = f"Captum, {'NHWC' if layout == 'channels_last' else 'NCHW'}, per_eval={k}"
                print(f"  {label:<34}{t:>9.2f}{copies / t:>10.0f}{t / t_ours:>12.2f}x  {diff:.1e} "
                      f"(pixel maps; drops up to {pixels.abs().max():.2f})")
                agree(diff, 1e-4, "Captum's and zfcourse's pixel maps")

    n = min(n_loop, len(images))
    start = clock(device)
    grid = loop(model, images[:n], target[:n].cpu(), window, stride, device)
    t = (clock(device) - start) * len(images) / n
    diff = (grid - result.drop[:n]).abs().max().item()
    print(f"  {'loop, one copy per forward':<34}{t:>9.2f}{copies / t:>10.0f}{t / t_ours:>12.2f}x  {diff:.1e} (grids)"
          + (f"; timed on {n} images" if n < len(images) else ""))
    agree(diff, 1e-4, "the one-copy loop's and zfcourse's drops")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="64 px images for mini_alexnet")
    parser.add_argument("--alexnet", type=int, default=2, help="224 px images for AlexNet (0: skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop", type=int, default=4, help="images for the one-copy loop")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (0: torch's default); one by default: the machine may be shared")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else default_device()
    if args.threads:
        torch.set_num_threads(args.threads)
    Occlusion = captum_occlusion()
    captum = "not installed" if Occlusion is None else __import__("captum").__version__
    print(f"device {device}, torch {torch.__version__}, captum {captum}, {torch.get_num_threads()} threads, "
          f"best of {args.repeats}")
    torch.manual_seed(0)
    bench("mini_alexnet(10), 64 px", he_init(mini_alexnet(10), 1), torch.randn(args.n, 3, 64, 64),
          window=16, stride=4, repeats=args.repeats, n_loop=args.loop, batch_sizes=(64, 256, 1024),
          per_eval=(16, 64, 256, 1024), device=device)
    if args.alexnet:
        bench("AlexNet (random), 224 px", he_init(alexnet(), 2), torch.randn(args.alexnet, 3, 224, 224),
              window=56, stride=14, repeats=1, n_loop=1, batch_sizes=(32, 128), per_eval=(32, 128),
              device=device)


if __name__ == "__main__":
    main()
