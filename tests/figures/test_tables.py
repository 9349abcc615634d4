"""Tables of results: HTML on the page, aligned text elsewhere."""
import pytest

from zfcourse.figures.tables import Table, table


def test_html_has_a_caption_a_header_and_a_row_per_entry_escaped():
    t = table([["<b>", "1.0 ± 0.5"], ["a & b", "12.5 ± 1.0"]], header=["name", "Delta"],
              caption="x < y")
    assert isinstance(t, Table)
    html = t._repr_html_()
    assert html.startswith("<table><caption>x &lt; y</caption>")
    assert html.count("<tr>") == 3 and html.count("<td ") == 4 and html.count("<th ") == 2
    assert "&lt;b&gt;" in html and "a &amp; b" in html and "<b>" not in html
    assert '<td style="text-align:right;white-space:nowrap">12.5 ± 1.0</td>' in html   # numbers: right, whole
    assert '<td style="text-align:left">a &amp; b</td>' in html


def test_text_is_aligned_numbers_to_the_right():
    t = table([[1, "pool5", "91%"], [20, "fc7", "—"]], header=["shots", "layer", "share"])
    assert [t.numeric(j) for j in range(3)] == [True, False, True]
    assert str(t).splitlines() == [
        "shots  layer  share",
        "-----  -----  -----",
        "    1  pool5    91%",
        "   20  fc7        —",
    ]
    assert repr(t) == str(t)
    assert str(table([["a"]], header=["x"], caption="c")).splitlines()[0] == "c"


def test_rows_must_match_the_header():
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        table([["a", "b"], ["c"]], header=["x", "y"])


def test_summary_table_has_a_row_per_layer_and_the_total():
    from zfcourse import models
    from zfcourse.figures.tables import summary_table
    rows = models.summary(models.mini_zfnet(10))
    t = summary_table(rows, caption="mini")
    assert len(t.rows) == len(rows) + 1 and t.rows[0][0] == "conv1"
    assert t.rows[-1] == ["total", "", "", f"{sum(r['parameters'] for r in rows):,}"]
    assert t.rows[0][2] == " x ".join(map(str, rows[0]["output"])) and t.numeric(3)
    assert len(summary_table(rows, total=False).rows) == len(rows)
