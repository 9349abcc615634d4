"""Cost of the atlas (zfcourse.atlas) next to the bare forward pass over the same images.

For each case, with the same data loader (batch size, decoding workers):

* forward: every image decoded and run to the deepest conv layer, keeping only each
  channel's maximum per image (what any search must do at least);
* atlas:   ``atlas.build``: the search for all conv layers, the patches and deconvnet
  projections of every unit's top 9, their JPEG and WebP sprites and the manifest.

The ratio atlas / forward is the figure; the goal is at most 2. Also the atlas's size
on disk and what a first visit to a unit's permalink downloads (index, manifest, the
layer's thumbnail sheet, the unit's two strips; the page's own HTML, script and theme
are measured in the browser check). The two answers must agree: the forward pass's
own top-k per channel equals the manifest's (asserted).

Cases: the mini AlexNet on the synthetic validation set (trained weights from the
cache with ``--trained``, else random), and AlexNet (random weights, saved in
torchvision's cache layout) at 224 px on a stand-in for Imagenette's validation
split: ``--alexnet`` generated JPEGs laid out as torchvision's Imagenette, in a
temporary folder, loaded by the imagenet world's own pipeline.

    python benchmarks/bench_atlas.py --trained                # the figures in the notes
    python benchmarks/bench_atlas.py --n 40 --alexnet 20      # toy size (the tests)
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
         "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]


def forward(model, images, layers, batch_size, workers, device):
    """Decode and run every image to the deepest layer; per layer the channel maxima [N, C]."""
    from zfcourse.models import layer_index, sequence

    where = {layer_index(model, name): name for name in layers}
    modules = sequence(model)[: max(where) + 1]
    scores = {name: [] for name in layers}
    with torch.no_grad():
        for batch in DataLoader(images, batch_size=batch_size, num_workers=workers):
            x = batch[0].to(device)
            for i, m in enumerate(modules):
                x = m(x)
                if i in where:
                    scores[where[i]].append(x.flatten(2).amax(2).cpu())
    return {name: torch.cat(s) for name, s in scores.items()}


def agree(manifest, scores):
    """The manifest's top-k per channel is the forward pass's (positive scores, ties to the lower index)."""
    k = manifest["k"]
    for layer, s in scores.items():
        for c, unit in enumerate(manifest["layers"][layer]["units"]):
            order = np.lexsort((np.arange(len(s)), -s[:, c].numpy()))[:k]
            want = [int(n) for n in order if s[n, c] > 0]
            got = [t["index"] for t in unit["top"]]
            # values within float rounding of each other may swap places between batchings
            if got != want:
                close = torch.isclose(s[got, c], s[want, c], rtol=1e-5)
                assert close.all(), f"{layer} channel {c}: atlas {got}, forward pass {want}"


def first_load(built) -> int:
    """Bytes a first visit to a unit's permalink fetches from the atlas."""
    m = built["manifest"]
    layer = next(iter(m["layers"].values()))
    unit = next(u for u in layer["units"] if u["top"])
    files = [layer["thumbnails"]["file"], unit["patches"], unit["projections"]] + \
        ([unit["filter"]] if "filter" in unit else [])
    return len(json.dumps(m, separators=(",", ":"))) + sum(len(built["files"][f]) for f in files) + 500


def bench(name, net, batch_size, workers, device):
    from zfcourse import atlas

    layers = atlas.conv_layers(net.model)
    net.model.to(device).eval()
    t = time.perf_counter()
    scores = forward(net.model, net.images, layers, batch_size, workers, device)
    fwd = time.perf_counter() - t
    t = time.perf_counter()
    built = atlas.build(net, batch_size=batch_size, workers=workers, device=device, progress=False)
    full = time.perf_counter() - t
    agree(built["manifest"], scores)
    size = sum(map(len, built["files"].values())) + len(json.dumps(built["manifest"], separators=(",", ":")))
    units = sum(len(v["units"]) for v in built["manifest"]["layers"].values())
    print(f"{name:<34} {len(net.images):>6} {units:>6} {fwd:>9.1f} {full:>9.1f} {full / fwd:>7.2f}x "
          f"{size / 1e6:>9.1f} {first_load(built) / 1e6:>9.2f}")


def standin(root: Path, n: int) -> None:
    """``n`` JPEGs of smooth random colour fields (320x240) in Imagenette's layout, and
    random AlexNet weights under torchvision's file name for IMAGENET1K_V1."""
    from zfcourse.models import alexnet

    ckpt = root / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(alexnet().state_dict(), ckpt)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        folder = root / "data" / "imagenette2-320" / "val" / WNIDS[i % 10]
        folder.mkdir(parents=True, exist_ok=True)
        coarse = torch.rand(1, 3, 6, 8, generator=g)
        fine = torch.nn.functional.interpolate(coarse, size=(240, 320), mode="bicubic", align_corners=False)
        fine = (fine + 0.08 * torch.randn(1, 3, 240, 320, generator=g)).clamp(0, 1)
        pixels = (fine[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{WNIDS[i % 10]}_{i}.JPEG", quality=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="synthetic validation images (mini AlexNet)")
    parser.add_argument("--alexnet", type=int, default=3925, help="stand-in Imagenette images (0: skip)")
    parser.add_argument("--trained", action="store_true", help="the synthetic world's trained mini AlexNet")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="decoding processes for the JPEG case")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from zfcourse import atlas, models, worlds
    from zfcourse.data import synthetic
    from zfcourse.infra.device import default_device

    device = torch.device(args.device) if args.device else default_device()
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"{'case':<34} {'images':>6} {'units':>6} {'forward s':>9} {'atlas s':>9} {'ratio':>8} "
          f"{'size MB':>9} {'first MB':>9}")
    val = synthetic.SyntheticImages("val", args.n, worlds.SYNTHETIC["seed"])
    torch.manual_seed(0)
    model = worlds.synthetic_model("alexnet", progress=False)[0] if args.trained else models.mini_alexnet(10)
    bench("mini AlexNet, synthetic, 64 px", atlas.Network(
        "mini-alexnet", "mini AlexNet", model, val, val.classes, synthetic.denormalize, "synthetic",
        "synthetic val"), args.batch_size, 0, device)
    if args.alexnet:
        with tempfile.TemporaryDirectory() as tmp:
            standin(Path(tmp), args.alexnet)
            os.environ.update(TORCH_HOME=f"{tmp}/torch", ZFCOURSE_DATA=f"{tmp}/data", ZFCOURSE_IMAGENETTE="320px")
            world = worlds.imagenet_world("benchmark stand-in", download=False)
            bench("AlexNet (random), 224 px JPEGs", atlas.Network(
                "alexnet", "AlexNet", world.model, world.val, world.classes, world.denormalize, "imagenet",
                "stand-in"), args.batch_size, args.workers, device)


if __name__ == "__main__":
    main()
