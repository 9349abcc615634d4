import pytest

from zfcourse import worlds


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
