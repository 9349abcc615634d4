import pytest
import torch

import zfcourse
from zfcourse import train, worlds


def test_unknown_world_lists_valid_names():
    with pytest.raises(ValueError, match="imagenet, synthetic, auto"):
        zfcourse.world("mnist")


def test_synthetic_world_trains_once_and_caches(tiny_synthetic, monkeypatch):
    w = zfcourse.world("synthetic")
    assert w.name == "synthetic" and w.classes == w.val.classes and len(w.classes) >= 10
    x, y = w.val[0]
    assert x.shape == (3, 64, 64) and w.model(x[None].to(w.device)).shape == (1, len(w.classes))
    assert w.heldout is not None and set(w.heldout.classes).isdisjoint(w.classes)
    files = list((tiny_synthetic / "models").glob("mini_alexnet-*.pt"))
    assert len(files) == 1 and not list((tiny_synthetic / "models").glob(".*tmp"))

    # a second process-level build loads the file instead of training
    monkeypatch.setattr(train, "_batches", lambda *a, **k: pytest.fail("trained again"))
    model, meta = worlds.synthetic_model("alexnet", progress=False)
    for a, b in zip(model.state_dict().values(), w.model.state_dict().values()):
        assert torch.equal(a, b.cpu())
    assert 0 <= meta["val_accuracy"] <= 1


def test_cache_key_covers_the_recipe(tiny_synthetic, monkeypatch):
    worlds.synthetic_model("zfnet", progress=False)
    monkeypatch.setitem(worlds.RECIPE, "lr", 0.005)
    worlds.synthetic_model("zfnet", progress=False)
    assert len(list((tiny_synthetic / "models").glob("mini_zfnet-*.pt"))) == 2


def test_corrupt_model_cache_is_retrained_with_a_warning(tiny_synthetic):
    worlds.synthetic_model("alexnet", progress=False)
    (path,) = (tiny_synthetic / "models").glob("mini_alexnet-*.pt")
    path.write_bytes(path.read_bytes()[:1000])  # a truncated download or an interrupted copy
    with pytest.warns(UserWarning, match="unreadable"):
        model, _ = worlds.synthetic_model("alexnet", progress=False)
    assert torch.load(path, weights_only=True)["history"]["snapshots"][1].keys() == model.state_dict().keys()


def test_synthetic_model_keeps_snapshots(tiny_synthetic, monkeypatch):
    monkeypatch.setitem(worlds.RECIPE, "epochs", 2)
    model, meta = worlds.synthetic_model("alexnet", progress=False)
    snaps = meta["history"].snapshots
    assert sorted(snaps) == [1, 2] and len(meta["history"].val_accuracy) == 2
    for k, v in model.state_dict().items():  # the last snapshot is the trained model
        assert torch.equal(snaps[2][k], v.cpu())


def test_training_is_deterministic(tiny_synthetic, tmp_path, monkeypatch):
    a, _ = worlds.synthetic_model("alexnet", progress=False)
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path / "other"))
    b, _ = worlds.synthetic_model("alexnet", progress=False)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n


def test_environment_chooses_the_world(tiny_synthetic, monkeypatch):
    monkeypatch.setenv("ZFCOURSE_WORLD", "synthetic")
    assert zfcourse.world().name == "synthetic"
    monkeypatch.setenv("ZFCOURSE_WORLD", "cifar")
    with pytest.raises(ValueError, match="ZFCOURSE_WORLD"):
        zfcourse.world()


def test_unknown_synthetic_architecture():
    with pytest.raises(ValueError, match="alexnet, zfnet"):
        worlds.synthetic_model("vgg")


# ---------------------------------------------------------------- the imagenet world, offline

def test_imagenet_world_runs_offline_from_standin_caches(imagenet_standin):
    w = zfcourse.world("imagenet")
    assert w.name == "imagenet" and len(w.classes) == 1000 and len(w.val) == 20
    for a, b in zip(w.model.state_dict().values(), imagenet_standin.state_dict().values()):
        assert torch.equal(a.cpu(), b)
    x, y = w.val[0]
    assert x.shape == (3, 224, 224)
    # Imagenette's labels become ImageNet's: tench is class 0, parachute class 701
    labels = [w.val[i][1] for i in range(len(w.val))]
    assert labels[0] == 0 and w.classes[labels[0]] == "tench" and labels[-1] == 701
    assert w.model(x[None].to(w.device)).shape == (1, 1000)
    assert torch.allclose(w.normalize(w.denormalize(x)), x, atol=1e-5) or w.denormalize(x).min() == 0


def test_imagenet_val_size_spreads_over_classes(imagenet_standin, monkeypatch):
    monkeypatch.setenv("ZFCOURSE_VAL_SIZE", "10")
    w = worlds.imagenet_world("test")
    assert len(w.val) == 10 and len({w.val[i][1] for i in range(10)}) == 10


def test_auto_prefers_cached_imagenet(imagenet_standin):
    w = zfcourse.world("auto")
    assert w.name == "imagenet" and "cached" in w.reason


def test_missing_imagenet_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ZFCOURSE_DATA", str(tmp_path / "data"))
    with pytest.raises(RuntimeError, match="alexnet-owt-7be5be79.pth.*missing"):
        worlds.imagenet_world("test", download=False)


def test_auto_falls_back_to_synthetic_offline_and_says_why(tiny_synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ZFCOURSE_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(worlds, "_reachable", lambda *a, **k: False)
    w = zfcourse.world("auto")
    assert w.name == "synthetic"
    assert "alexnet-owt-7be5be79.pth" in w.reason and "no connection" in w.reason
    assert "synthetic" in w._repr_markdown_()
