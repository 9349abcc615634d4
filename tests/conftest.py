import pytest
import torch
from PIL import Image

from zfcourse import models, worlds

from .helpers import seeded, stand_in_world

# Comparing floating-point results. Bitwise equality (torch.equal, == 0) only where it must
# hold on every processor:
#   * the same operation on the same shapes and data (determinism, a cache round trip, a
#     seeded generator, a copy or a crop of pixels);
#   * structural zeros: values that no nonzero term reaches (outside a receptive field,
#     a zero-filled border), which are zero whatever order a kernel sums in;
#   * exactly representable arithmetic (small integers, halves);
#   * integer results (an argmax, a top-k order) of float64 values far apart.
# Everywhere else, two computations of one quantity (another batch composition, another
# formulation, another kernel) agree to a tolerance relative to the scale of what is
# compared, e.g. torch.testing.assert_close(a, b, rtol=..., atol=rtol * b.abs().max()):
# oneDNN and MKL choose kernels by processor, so the last bits of a sum differ across CPUs.


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # The tests use small tensors: extra threads only add synchronisation, and on a
    # shared two-core machine they make the suite several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mini_world():
    """An untrained mini AlexNet (seed 0) in a stand-in World: for figures and explorers."""
    return stand_in_world(seeded(lambda: models.mini_alexnet(10)))


@pytest.fixture
def tiny_synthetic(tmp_path, monkeypatch):
    """A synthetic world small enough to train in seconds, cached in a fresh folder."""
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(worlds.SYNTHETIC, "n_train", 200)
    monkeypatch.setitem(worlds.SYNTHETIC, "n_val", 60)
    monkeypatch.setitem(worlds.SYNTHETIC, "n_heldout", 30)
    monkeypatch.setitem(worlds.RECIPE, "epochs", 1)
    worlds._world.cache_clear()
    yield tmp_path / "cache"
    worlds._world.cache_clear()


WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
         "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]


@pytest.fixture
def imagenet_standin(tmp_path, monkeypatch):
    """torchvision's caches laid out as after a real download, with stand-in contents:
    random AlexNet weights under the official file name, and a tiny Imagenette
    (two pictures per class and split)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ZFCOURSE_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("ZFCOURSE_IMAGENETTE", raising=False)
    monkeypatch.delenv("ZFCOURSE_VAL_SIZE", raising=False)
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(worlds, "_reachable", lambda *a, **k: pytest.fail("tests never touch the network"))
    torch.manual_seed(0)
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    ckpt.parent.mkdir(parents=True)
    reference = models.alexnet()
    torch.save(reference.state_dict(), ckpt)
    gen = torch.Generator().manual_seed(0)
    for wnid in WNIDS:
        for split in ("train", "val"):
            folder = tmp_path / "data" / "imagenette2-320" / split / wnid
            folder.mkdir(parents=True)
            for i in range(2):
                pixels = torch.randint(0, 256, (240, 320, 3), dtype=torch.uint8, generator=gen).numpy()
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG")
    worlds._world.cache_clear()
    yield reference
    worlds._world.cache_clear()
