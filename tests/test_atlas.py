"""The atlas against brute force, its images against their pixels, bad input, caching and
the Sphinx extension that writes it into the site."""
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

import zfcourse
from zfcourse import atlas, minis, receptive
from zfcourse.infra import sprites
from zfcourse.site import atlas_page
from zfcourse.framing import signed_scale
from zfcourse.models import activations, conv_of


def denormalize(x):
    return (x * 0.25 + 0.5).clamp(0, 1)


def small(seed=0):
    """Three conv layers of a few channels, 32 px input: an atlas in a second."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4)).eval()


def network(n=30, seed=0, model=None, name="toy"):
    model = model or small(seed)
    g = torch.Generator().manual_seed(seed + 1)
    images = torch.randn(n, 3, 32, 32, generator=g)
    labels = torch.arange(n) % 4
    return atlas.Network(name, "toy net", model, TensorDataset(images, labels), ["a", "b", "c", "d"],
                         denormalize, "synthetic", f"{n} random images")


def decode(data):
    return torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1)


def brute_force(model, images, labels, layer, k):
    """Every activation, each image's maximum and its first position, then per channel the
    positive scores, strongest first and lower index first among ties (numpy, apart)."""
    a = activations(model, images, layer)[layer]
    width = a.shape[3]
    a = a.flatten(2).numpy()
    score, where = a.max(axis=2), a.argmax(axis=2)
    units = []
    for c in range(a.shape[1]):
        order = np.lexsort((np.arange(len(images)), -score[:, c]))[:k]
        order = [int(n) for n in order if score[n, c] > 0]
        units.append({"active": int((score[:, c] > 0).sum()),
                      "top": [(n, float(score[n, c]), [int(where[n, c] // width), int(where[n, c] % width)],
                               int(labels[n])) for n in order]})
    return units


def assert_matches(manifest, model, images, labels, folder=None):
    k = manifest["k"]
    for layer, info in manifest["layers"].items():
        expected = brute_force(model, images, labels, layer, k)
        assert info["channels"] == len(expected) == len(info["units"])
        assert info["receptive_field"] == list(receptive.receptive_field(model, layer))
        for c, (unit, want) in enumerate(zip(info["units"], expected)):
            assert unit["channel"] == c and unit["active"] == want["active"]
            assert [(t["index"], t["position"], t["label"]) for t in unit["top"]] == \
                   [(n, p, y) for n, _, p, y in want["top"]]
            got = torch.tensor([t["value"] for t in unit["top"]], dtype=torch.float64)
            ref = torch.tensor([v for _, v, _, _ in want["top"]], dtype=torch.float64)
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max() if len(ref) else 1))
            if unit["top"]:
                counts = np.bincount([t["label"] for t in unit["top"]])
                assert unit["purity"] == pytest.approx(counts.max() / len(unit["top"]), rel=1e-6)
                assert unit["classes"][0]["count"] == counts.max()
                if folder is not None:
                    for key in ("patches", "projections"):
                        strip = decode((folder / unit[key]).read_bytes())
                        assert strip.shape[-2:] == (info["tile"][0], info["tile"][1] * len(unit["top"]))
            else:
                assert unit["max"] is None and "patches" not in unit


def test_world_atlas_in_the_site_equals_brute_force(tiny_synthetic, tmp_path):
    """The Sphinx extension's output, read back from disk as a reader's browser would."""
    world = zfcourse.world("synthetic")
    app = SimpleNamespace(outdir=str(tmp_path / "html"), builder=SimpleNamespace(format="html"))
    atlas_page._build_atlas(app, None)
    index = json.loads((tmp_path / "html" / "atlas" / "index.json").read_text())
    assert index["world"] == "synthetic"
    assert [n["name"] for n in index["networks"]] == ["mini-alexnet", "mini-zfnet"]
    images = torch.stack([world.val[i][0] for i in range(len(world.val))])
    labels = world.val.labels
    for entry, net in zip(index["networks"], minis.atlas_networks(world)):
        path = tmp_path / "html" / "atlas" / entry["manifest"]
        manifest = json.loads(path.read_text())
        assert manifest["network"] == entry["name"] and manifest["num_images"] == len(world.val) == 60
        assert list(manifest["layers"]) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
        assert manifest["classes"] == world.classes and len(manifest["chance_purity"]) == 9
        assert_matches(manifest, net.model.cpu().eval(), images, labels, path.parent)
    # a second build reads the cache and writes the same files
    before = {p: p.read_bytes() for p in (tmp_path / "html" / "atlas").rglob("*") if p.is_file()}
    atlas_page._build_atlas(app, None)
    after = {p: p.read_bytes() for p in (tmp_path / "html" / "atlas").rglob("*") if p.is_file()}
    assert before == after
    atlas_page._build_atlas(SimpleNamespace(outdir=str(tmp_path / "tex"), builder=SimpleNamespace(format="latex")),
                              None)
    assert not (tmp_path / "tex").exists()


def test_conv1_tiles_are_the_pixels_and_activation_times_filter():
    net = network()
    built = atlas.build(net, progress=False)
    info = built["manifest"]["layers"]["conv1"]
    size, stride, padding = receptive.receptive_field(net.model, "conv1")
    assert info["tile"] == [size, size]                # 5 px: stored as it is, without loss
    images = net.images.tensors[0]
    weight = conv_of(net.model, "conv1").weight.detach()
    checked = 0
    for unit in info["units"]:
        patches = decode(built["files"][unit["patches"]]).float() / 255
        proj = decode(built["files"][unit["projections"]]).float() / 255
        for j, t in enumerate(unit["top"]):
            top, left, bottom, right = receptive.patch_box(net.model, "conv1", t["position"])
            if top < 0 or left < 0 or bottom > 32 or right > 32:
                continue                               # border boxes: tested in test_framing
            pixels = denormalize(images[t["index"], :, top:bottom, left:right])
            tile = slice(j * size, (j + 1) * size)
            torch.testing.assert_close(patches[:, :, tile], pixels, rtol=0, atol=0.5 / 255 + 1e-6)
            # below conv1 nothing is unpooled or rectified: the projection is value x filter
            expected = signed_scale((t["value"] * weight[unit["channel"]])[None])[0]
            torch.testing.assert_close(proj[:, :, tile], expected, rtol=0, atol=1 / 255)
            checked += 1
    assert checked > 20
    assert info["units"][0]["filter"] == "conv1/0000-filter.webp"
    filt = decode(built["files"][info["units"][0]["filter"]]).float() / 255
    torch.testing.assert_close(filt, signed_scale(weight[:1])[0], rtol=0, atol=0.5 / 255 + 1e-6)


def test_fewer_than_k_images_a_dead_unit_and_determinism():
    net = network(n=5)
    with torch.no_grad():
        conv_of(net.model, "conv3").bias[3] = -1e6       # channel 3 never fires
    first = atlas.build(net, progress=False)
    again = atlas.build(net, progress=False)
    assert first["manifest"] == again["manifest"] and first["files"] == again["files"]
    m = first["manifest"]
    assert m["k"] == 5 and len(m["chance_purity"]) == 5
    images = net.images.tensors[0]
    assert_matches(m, net.model, images, net.images.tensors[1])
    dead = m["layers"]["conv3"]["units"][3]
    assert dead == {"channel": 3, "max": None, "active": 0, "active_share": 0.0, "purity": None,
                    "classes": [], "top": []}
    assert not any(p.startswith("conv3/0003") for p in first["files"])
    assert all(len(u["top"]) <= 5 for layer in m["layers"].values() for u in layer["units"])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="convolutional layers, and this model has none"):
        atlas.build(network(model=nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))), progress=False)
    with pytest.raises(ValueError, match="at least one image"):
        atlas.build(network(n=0), progress=False)
    with pytest.raises(TypeError, match="zfcourse.atlas.Network"):
        atlas.build("mini-alexnet")


def test_cache_is_keyed_atomic_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    net = network(n=12)
    built = atlas.cached_build(net, root=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("toy-")
    monkeypatch.setattr(atlas, "build", lambda *a, **k: pytest.fail("built again"))
    assert atlas.cached_build(net, root=tmp_path) == built
    monkeypatch.undo()

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    other = network(n=12, seed=5)                       # other weights: another key
    monkeypatch.setattr(atlas, "build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atlas.cached_build(other, root=tmp_path)
    assert list(tmp_path.iterdir()) == files            # nothing partial left
    monkeypatch.undo()
    files[0].write_bytes(b"not a cache file")
    with pytest.warns(UserWarning, match="rebuilding"):
        assert atlas.cached_build(net, root=tmp_path) == built
    atlas.cached_build(other, root=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def test_write_replaces_an_atlas_whole(tmp_path, monkeypatch):
    built = atlas.build(network(n=10), progress=False)
    folder = atlas.write(built, tmp_path / "site" / "toy")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == built["manifest"]
    for layer in manifest["layers"].values():
        assert (folder / layer["thumbnails"]["file"]).is_file()
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    assert len(before) > len(built["files"])
    broken = dict(built, files={"conv1/x.webp": b"x", "conv1": b"a file where a folder must go"})
    with pytest.raises(OSError):
        atlas.write(broken, folder)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert [p.name for p in (tmp_path / "site").iterdir()] == ["toy"]


def test_sprites_lay_out_tiles_and_cells():
    tiles = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).view(4, 3, 2, 2)
    row = sprites.strip(tiles)
    assert row.shape == (3, 2, 8) and torch.equal(row[:, :, 4:6], tiles[2])
    grid = sprites.sheet(tiles, columns=3)
    assert grid.shape == (3, 4, 6) and torch.equal(grid[:, 2:4, 0:2], tiles[3])
    assert (grid[:, 2:4, 2:] == 255).all()
    big = sprites.to_tiles(torch.rand(2, 3, 200, 100))
    assert big.shape == (2, 3, sprites.TILE, sprites.TILE // 2)
    small = sprites.to_tiles(torch.full((1, 3, 11, 11), float("nan")))
    assert small.shape == (1, 3, 11, 11) and (small == 255).all()
    assert sprites.to_tiles(torch.rand(1, 3, 11, 11), 48, enlarge=True).shape == (1, 3, 44, 44)
    lossless = torch.randint(0, 256, (3, 11, 99), dtype=torch.uint8)
    data, ext = sprites.encode(lossless)
    assert ext == "webp" and torch.equal(decode(data), lossless)
    assert sprites.encode(torch.zeros(3, 17, 170, dtype=torch.uint8))[1] == "jpg"
