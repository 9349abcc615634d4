"""Where the course keeps its files: folders checked before any work, numbers in the
environment read strictly."""
import pytest

from zfcourse.infra import paths


def test_a_cache_that_is_a_file_is_refused_naming_the_variable(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path / "file"))
    with pytest.raises(ValueError, match="ZFCOURSE_CACHE must name a folder"):
        paths.cache_dir()
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path / "file" / "below"))
    with pytest.raises(ValueError, match="ZFCOURSE_CACHE"):
        paths.cache_dir()


def test_a_missing_cache_folder_is_made(tmp_path, monkeypatch):
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path / "new" / "cache"))
    assert paths.cache_dir().is_dir()
    monkeypatch.setenv("ZFCOURSE_DATA", str(tmp_path / "file"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="ZFCOURSE_DATA must name a folder"):
        paths.data_dir()


def test_an_unwritable_cache_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(paths.os, "access", lambda path, mode: False)   # root may write anywhere
    with pytest.raises(ValueError, match="ZFCOURSE_CACHE: the folder .* is not writable"):
        paths.cache_dir()


@pytest.mark.parametrize("text, message", [("abc", "must be an integer, got 'abc'"),
                                           ("-3", "must be at least 0, got -3"),
                                           ("2.5", "must be an integer")])
def test_numbers_in_the_environment_are_read_strictly(monkeypatch, text, message):
    monkeypatch.setenv("ZFCOURSE_VAL_SIZE", text)
    with pytest.raises(ValueError, match=f"ZFCOURSE_VAL_SIZE {message}"):
        paths.env_int("ZFCOURSE_VAL_SIZE", 0)


def test_an_unset_or_empty_number_is_the_default(monkeypatch):
    monkeypatch.delenv("ZFCOURSE_VAL_SIZE", raising=False)
    assert paths.env_int("ZFCOURSE_VAL_SIZE", 7) == 7
    monkeypatch.setenv("ZFCOURSE_VAL_SIZE", " 12 ")
    assert paths.env_int("ZFCOURSE_VAL_SIZE", 7) == 12
