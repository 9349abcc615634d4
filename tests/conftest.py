import pytest
import torch

from zfcourse import worlds


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # The tests use small tensors: extra threads only add synchronisation, and on a
    # shared two-core machine they make the suite several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
