"""Progress bars show where a reader waits, and never on the website's pages."""
from zfcourse.infra import progress


def test_bars_are_left_out_of_the_website_only(monkeypatch):
    monkeypatch.delenv(progress.SITE, raising=False)
    assert not progress.tqdm(range(3)).disable
    assert progress.tqdm(range(3), disable=True).disable
    monkeypatch.setenv(progress.SITE, "1")
    assert progress.tqdm(range(3)).disable
    assert list(progress.tqdm(range(3))) == [0, 1, 2]
