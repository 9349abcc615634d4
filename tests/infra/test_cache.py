import os
import time

import pytest
import torch

from zfcourse.infra import cache


def test_key_is_stable_and_sensitive():
    assert cache.key(a=1, b=[1, 2]) == cache.key(b=[1, 2], a=1)
    assert cache.key(a=1) != cache.key(a=2)


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path))
    assert cache.cache_dir() == tmp_path


def test_cached_builds_once(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(3.0)}

    p = tmp_path / "x.pt"
    assert torch.equal(cache.cached(p, build)["w"], torch.arange(3.0))
    assert torch.equal(cache.cached(p, build)["w"], torch.arange(3.0))
    assert len(calls) == 1


def test_corrupt_file_is_rebuilt_with_a_warning(tmp_path):
    p = tmp_path / "x.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        out = cache.cached(p, lambda: {"w": torch.ones(2)})
    assert torch.equal(cache.load(p)["w"], torch.ones(2)) and torch.equal(out["w"], torch.ones(2))


def test_invalid_content_is_rebuilt(tmp_path):
    p = tmp_path / "x.pt"
    cache.save_atomic({"wrong": 1}, p)

    def validate(obj):
        obj["w"]

    with pytest.warns(UserWarning, match="KeyError"):
        out = cache.cached(p, lambda: {"w": torch.zeros(1)}, validate)
    assert "w" in out


def test_code_in_a_cache_file_is_refused(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"f": os.getcwd}, p)  # a pickled function: weights_only must refuse it
    with pytest.warns(UserWarning, match="unreadable"):
        cache.cached(p, lambda: {"ok": torch.zeros(1)})


def test_failed_write_leaves_nothing_behind(tmp_path):
    p = tmp_path / "sub" / "x.pt"
    with pytest.raises(Exception):
        cache.save_atomic({"f": lambda: 0}, p)  # lambdas cannot be pickled
    assert not p.exists()
    assert list(p.parent.iterdir()) == []


def test_failed_build_leaves_nothing_behind(tmp_path):
    p = tmp_path / "x.pt"

    def build():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.cached(p, build)
    assert list(tmp_path.iterdir()) == []


def test_temporary_files_left_by_a_killed_process_are_removed(tmp_path):
    target = tmp_path / "x.pt"
    stale, fresh = tmp_path / ".x.pt.abc.tmp", tmp_path / ".x.pt.def.tmp"
    other = tmp_path / ".y.pt.ghi.tmp"
    for f in (stale, fresh, other):
        f.write_bytes(b"partial")
    old = time.time() - 2 * cache.STALE_SECONDS
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    cache.save_atomic({"a": 1}, target)
    assert not stale.exists()
    assert fresh.exists()           # perhaps another process writing now
    assert other.exists()           # another file's
    assert cache.load(target) == {"a": 1}
