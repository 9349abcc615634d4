"""Tables of results, as HTML on the page and as aligned text in a terminal.

A chapter that printed a table in monospace text had it cut off at the page's right
edge as soon as a row grew long. :func:`table` builds a :class:`Table` instead: in
Jupyter, Colab and on the built site it is displayed as an HTML table (its
``_repr_html_``), which wraps long cells; anywhere else ``print`` or ``repr`` gives
the same cells as aligned text. Cells are shown as given (format numbers before);
cells that look like numbers are right-aligned.
"""
from __future__ import annotations

import html
import re
from typing import Sequence

__all__ = ["Table", "table", "summary_table"]

_NUMBER = re.compile(r"^[−+-]?\d[\d,]*(\.\d+)?%?( ± \d+(\.\d+)?%?)?$")


def _is_number(cell: str) -> bool:
    return bool(_NUMBER.match(cell)) or cell == "—"


class Table:
    """Rows of cells under a header, with an optional caption (see :func:`table`)."""

    def __init__(self, header: Sequence, rows: Sequence[Sequence],
                 caption: str | None = None):
        self.header = [str(h) for h in header]
        self.rows = [[str(c) for c in row] for row in rows]
        self.caption = caption
        for i, row in enumerate(self.rows):
            if len(row) != len(self.header):
                raise ValueError(f"row {i} has {len(row)} cells, the header "
                                 f"{len(self.header)}: {row}")

    def numeric(self, column: int) -> bool:
        """Whether every cell of ``column`` looks like a number (right-aligned)."""
        cells = [row[column] for row in self.rows]
        return bool(cells) and all(_is_number(c) for c in cells)

    def _repr_html_(self) -> str:
        align = ["right" if self.numeric(j) else "left"
                 for j in range(len(self.header))]

        def cells(tag, row):
            # a number is never broken across lines ("63.5 ±" over "3.9"); a header may be
            whole = ";white-space:nowrap" if tag == "td" else ""
            return "".join(f'<{tag} style="text-align:{a}{whole if a == "right" else ""}">'
                           f"{html.escape(c)}</{tag}>" for c, a in zip(row, align))

        caption = (f"<caption>{html.escape(self.caption)}</caption>"
                   if self.caption else "")
        body = "".join(f"<tr>{cells('td', row)}</tr>" for row in self.rows)
        return (f"<table>{caption}<thead><tr>{cells('th', self.header)}"
                f"</tr></thead><tbody>{body}</tbody></table>")

    def __str__(self) -> str:
        widths = [max(len(r[j]) for r in [self.header] + self.rows)
                  for j in range(len(self.header))]

        def line(row):
            return "  ".join(c.rjust(w) if self.numeric(j) else c.ljust(w)
                             for j, (c, w) in enumerate(zip(row, widths)))

        lines = [line(self.header), "  ".join("-" * w for w in widths)]
        lines += [line(row) for row in self.rows]
        lines = [s.rstrip() for s in lines]
        return "\n".join(([self.caption] if self.caption else []) + lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))


def table(rows: Sequence[Sequence], header: Sequence,
          caption: str | None = None) -> Table:
    """A :class:`Table` of ``rows`` (each a sequence of cells, one per ``header``
    entry); make it a cell's last expression, or pass it to ``display``."""
    return Table(header, rows, caption)


def summary_table(rows: list[dict], caption: str | None = None, total: bool = True) -> Table:
    """The rows of :func:`zfcourse.models.summary` as a table: each layer's name, operation,
    output shape and parameters, and with ``total`` a last row of all the parameters."""
    body = [[r["layer"], r["operation"], " x ".join(map(str, r["output"])), f"{r['parameters']:,}"]
            for r in rows]
    if total:
        body.append(["total", "", "", f"{sum(r['parameters'] for r in rows):,}"])
    return table(body, header=["layer", "operation", "output", "parameters"], caption=caption)
