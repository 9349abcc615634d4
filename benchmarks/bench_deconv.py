"""Batched deconvnet projections versus one autograd backward pass per neuron.

Task: project the strongest activation of every conv5 channel of each image (256 neurons
per image; 2,304 for 9 images) through torchvision's AlexNet at 224 px to pixel space.

* batched: ``zfcourse.deconv.project`` (one forward pass for all images, then the
  explicit reverse pass for chunks of neurons, each only over the window it reaches);
* per neuron: ``zfcourse.deconv.project_autograd`` on one image and one channel at a
  time: a forward pass (stopped at conv5) and a backward pass per neuron, as a
  per-neuron attribution library is used;
* shared forward: ``project_autograd`` for all 256 channels of one image (timed on the
  first image, times the number of images): one forward pass per image, kept for one
  backward pass per neuron. The leanest autograd loop: what is left of the batched
  pass's advantage here comes from its windows alone;
* Captum, when it is installed (it is not a dependency): ``NeuronDeconvolution`` (or
  ``NeuronGuidedBackprop`` / ``NeuronGradient``) per neuron, which runs the whole
  network forwards each time.

The weights are random (torchvision's initialisation, fixed seed): the timings and the
agreement do not depend on training, and the benchmark needs no download. The
per-neuron loops are timed on a sample of neurons spread over the images and channels
and extrapolated to all of them (the output says so). Results are compared on that
sample: max |difference| / max |reference| per neuron, worst case (Captum seeds the
backward pass with 1, not with the activation, so its maps are scaled first).

The batched call is timed after one untimed call of the same size: on a virtual machine
the first touch of fresh memory (the 1.4 GB result) can cost seconds once per process,
which says nothing about the method. The limit is the arithmetic: the multiply-adds of
each way, counted by ``torch.utils.flop_counter`` (the batched pass per neuron, its one
forward pass shared out; one forward and one backward pass per neuron for the loop).
The ratio of the two is the speed-up a method that computes every product of its
windows can reach at equal arithmetic speed.

    python benchmarks/bench_deconv.py [--images 9] [--device cpu] [--threads 1] [--rule deconvnet]

Thread count matters on a shared machine: with more threads than free cores, the many
small operations of the per-neuron loop slow down far more than the batched pass.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from zfcourse import deconv, models
from zfcourse.infra.device import default_device


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _captum(model, rule):
    try:
        from captum import attr
    except ImportError:
        return None
    method = {"deconvnet": attr.NeuronDeconvolution, "guided": attr.NeuronGuidedBackprop,
              "gradient": attr.NeuronGradient}[rule]
    return method(model, models.get_layer(model, "conv5"))


def _worst(batched, picks, reference, scale=None):
    worst = 0.0
    for j, (k, ref) in enumerate(zip(picks, reference)):
        ref = ref if scale is None else ref * scale[j]
        worst = max(worst, ((batched[k] - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item())
    return worst


def _flops_batched(model, images, channels, rule, options) -> float:
    """Floating-point operations per neuron of the batched projection (its result is dropped,
    so that the timed call reuses the memory)."""
    with FlopCounterMode(display=False) as counter:
        deconv.project(model, images, "conv5", channels, rule=rule, **options)
    return counter.get_total_flops() / channels.numel()


def _flops_per_neuron(model, image) -> tuple[float, float]:
    """One neuron by autograd: the operations of the forward pass to conv5 and of the
    backward pass to the pixels (the ReLU rule adds none, so plain autograd counts the same)."""
    pixels = image.detach().requires_grad_()
    with FlopCounterMode(display=False) as counter:
        x = pixels
        for m in models.sequence(model)[: models.layer_index(model, "conv5") + 1]:
            x = m(x)
        seed = torch.zeros_like(x)
        seed[0, 0, 0, 0] = 1.0
        torch.autograd.backward(x, seed, inputs=[pixels])
    backward = sum(f for op, f in counter.get_flop_counts()["Global"].items() if "backward" in str(op))
    return counter.get_total_flops() - backward, backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=9, help="number of images (default 9)")
    parser.add_argument("--device", default=str(default_device()), help="default: CUDA when present")
    parser.add_argument("--rule", default="deconvnet", choices=deconv.RULES)
    parser.add_argument("--sample", type=int, default=48,
                        help="neurons timed one by one, then extrapolated (default 48; 0 = all)")
    parser.add_argument("--chunk-size", type=int, default=None, help="project's chunk_size (default: its own)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--no-captum", action="store_true", help="skip Captum even if it is installed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = models.alexnet().to(device).eval()  # random weights: no download; see the module doc
    images = torch.randn(args.images, 3, 224, 224, device=device)
    channels = torch.arange(256, device=device).expand(args.images, 256)
    n = channels.numel()
    options = {} if args.chunk_size is None else {"chunk_size": args.chunk_size}

    # Untimed, at full size (see the module doc); it also counts the arithmetic.
    flops_batched = _flops_batched(model, images, channels, args.rule, options)
    flops_forward, flops_backward = _flops_per_neuron(model, images[:1])
    flops_loop = flops_forward + flops_backward
    deconv.project_autograd(model, images[:1], "conv5", 0, rule=args.rule)

    start = _clock(device)
    batched = deconv.project(model, images, "conv5", channels, rule=args.rule, **options).flatten(0, 1)
    t_batched = _clock(device) - start

    sample = n if args.sample <= 0 else min(args.sample, n)
    picks = torch.linspace(0, n - 1, sample).round().long().tolist()
    start = _clock(device)
    reference = [deconv.project_autograd(model, images[k // 256:k // 256 + 1], "conv5", k % 256, rule=args.rule)[0]
                 for k in picks]
    t_loop = (_clock(device) - start) / sample * n
    worst = _worst(batched, picks, reference)

    start = _clock(device)
    shared = deconv.project_autograd(model, images[:1], "conv5", channels[:1], rule=args.rule)[0]
    t_shared = (_clock(device) - start) * args.images
    worst = max(worst, _worst(batched, range(256), shared))

    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    extrapolated = "" if sample == n else f"; {sample} timed, extrapolated"
    print(f"AlexNet (random weights), {args.images} images x 256 conv5 channels = {n} neurons at 224 px, "
          f"rule={args.rule}, device={device}, threads={threads}")
    print(f"  batched project:              {t_batched:8.2f} s  ({t_batched / n * 1e3:6.2f} ms per neuron)")
    print(f"  project_autograd per neuron:  {t_loop:8.2f} s  ({t_loop / n * 1e3:6.2f} ms per neuron{extrapolated})")
    print(f"  shared forward, per neuron:   {t_shared:8.2f} s  ({t_shared / n * 1e3:6.2f} ms per neuron; "
          f"1 image timed, times {args.images})")
    flops_shared = flops_backward + flops_forward / 256
    bound, bound_shared = flops_loop / flops_batched, flops_shared / flops_batched
    print(f"  arithmetic per neuron: batched {flops_batched / 1e6:.0f} MFLOP, per neuron {flops_loop / 1e6:.0f} MFLOP "
          f"(bound {bound:.1f}x, reached {t_loop / t_batched / bound:.0%}), shared forward {flops_shared / 1e6:.0f} "
          f"MFLOP (bound {bound_shared:.1f}x, reached {t_shared / t_batched / bound_shared:.0%})")
    summary = (f"SUMMARY neurons={n} device={device} threads={threads} batched_s={t_batched:.2f} "
               f"per_neuron_s={t_loop:.2f} speedup={t_loop / t_batched:.1f}x arithmetic_bound={bound:.1f}x "
               f"shared_forward_s={t_shared:.2f} speedup_vs_shared={t_shared / t_batched:.1f}x "
               f"arithmetic_bound_shared={bound_shared:.1f}x")

    captum = None if args.no_captum else _captum(model, args.rule)
    if captum is not None:
        act = models.activations(model, images, "conv5")["conv5"].flatten(2)
        value, where = act.max(2)
        start = _clock(device)
        theirs = [captum.attribute(images[k // 256:k // 256 + 1], neuron_selector=(
            k % 256, *divmod(where[k // 256, k % 256].item(), 13)))[0] for k in picks]
        t_captum = (_clock(device) - start) / sample * n
        worst = max(worst, _worst(batched, picks, theirs, [value[k // 256, k % 256] for k in picks]))
        print(f"  Captum {type(captum).__name__}:  {t_captum:8.2f} s  "
              f"({t_captum / n * 1e3:6.2f} ms per neuron{extrapolated})")
        summary += f" captum_s={t_captum:.2f} speedup_vs_captum={t_captum / t_batched:.1f}x"
    print(f"  max |difference| / max |reference|, worst of {sample} + 256 neurons: {worst:.1e}")
    print(summary + f" max_rel_diff={worst:.1e}" + (" (per-neuron times extrapolated)" if sample < n else ""))


if __name__ == "__main__":
    main()
