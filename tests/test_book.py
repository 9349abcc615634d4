"""The book's notebooks stay in step with _config.yml and _toc.yml."""
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def cells(path):
    return json.loads(path.read_text())["cells"]


def test_there_are_chapters():
    assert NOTEBOOKS


def test_repository_is_configured_for_main():
    assert CONFIG["repository"]["branch"] == "main"
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_is_guarded_hidden_and_points_at_the_repository(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    first = code[0]
    source = "".join(first["source"])
    assert "remove-cell" in first.get("metadata", {}).get("tags", []), "the install cell is hidden on the website"
    assert 'if "google.colab" in sys.modules' in source, "installs only inside Colab"
    assert f"zfcourse@git+{CONFIG['repository']['url']}" in source, "installs from the repository in _config.yml"
    assert "torch" not in source.replace("zfcourse", ""), "never reinstalls what Colab already has"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    assert all(not c.get("outputs") and not c.get("execution_count") for c in cells(path) if c["cell_type"] == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_opens_with_a_title_and_ends_with_exercises(path):
    cs = cells(path)
    assert cs[0]["cell_type"] == "markdown" and "".join(cs[0]["source"]).startswith("# ")
    assert any("## Exercises" in "".join(c["source"]) for c in cs if c["cell_type"] == "markdown")
    markdown = ["".join(c["source"]) for c in cs if c["cell_type"] == "markdown"]
    # <details> is collapsed in Jupyter, Colab and on the site; a dropdown admonition only on the site
    assert any('<details class="answer' in m for m in markdown), "answers are hidden"
    assert not any("{admonition} Answer" in m for m in markdown), "an answer shows in Jupyter and Colab"


def test_every_chapter_is_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {c["file"] for c in toc["chapters"]}
    # the other pages (the atlas) are Markdown
    assert {f for f in listed if (ROOT / f"{f}.ipynb").exists()} == {f"book/{p.stem}" for p in NOTEBOOKS}
    assert all((ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists() for f in listed)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_code_fits_the_page(path):
    """The site shows code lines of up to 80 characters whole; a cell is read, not scrolled."""
    for n, c in enumerate(c for c in cells(path) if c["cell_type"] == "code"):
        lines = "".join(c["source"]).splitlines()
        wide = [line for line in lines if len(line) > 80]
        assert not wide, f"code cell {n}: {len(wide)} lines over 80 characters, e.g. {wide[0]!r}"
        assert len(lines) <= 20, f"code cell {n}: {len(lines)} lines (at most 20)"
