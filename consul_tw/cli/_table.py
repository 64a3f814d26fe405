# -*- test-case-name: tests.unit.cli.test_table -*-
"""
Column alignment in the style of ``github.com/ryanuber/columnize``.

Consul formats ``members`` and ``catalog nodes`` with columnize: every cell
is trimmed, each column is as wide as its widest cell, columns are joined by
two spaces and the last column is not padded.  People (and scripts) line up
on that layout, so it is reproduced here.  One deliberate difference: lines
are right-stripped, so a row whose last cells are empty (an ``unknown``
member) has no trailing spaces.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

GLUE = "  "


def display_width(text: str) -> int:
    """
    Terminal columns taken by ``text``: wide East Asian characters count 2.

    columnize does the same for Han characters so node names in CJK still
    line up.
    """
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def columnize(rows: Sequence[Sequence[str]], glue: str = GLUE) -> str:
    """
    Align ``rows`` (the first is usually the header) into columns.

    Rows may have different lengths, as in columnize.  The result has no
    trailing newline, matching columnize's output, so callers print it as
    one line of text.
    """
    cells = [[cell.strip() for cell in row] for row in rows]
    widths: list[int] = []
    for row in cells:
        for column, cell in enumerate(row):
            width = display_width(cell)
            if column == len(widths):
                widths.append(width)
            elif widths[column] < width:
                widths[column] = width
    lines = []
    for row in cells:
        padded = [
            cell + " " * (widths[column] - display_width(cell))
            for column, cell in enumerate(row[:-1])
        ]
        lines.append(glue.join(padded + row[-1:]).rstrip())
    return "\n".join(lines)
