# -*- test-case-name: tests.unit.cli.test_table -*-
"""Tests for columnize-style alignment (:mod:`consul_tw.cli._table`)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from consul_tw.cli._table import columnize, display_width


class ColumnizeTests(SynchronousTestCase):
    """:func:`columnize`."""

    def test_alignment(self) -> None:
        """Columns are as wide as their widest cell, joined by two spaces."""
        self.assertEqual(
            columnize([["Node", "Address"], ["a-long-name", "1.2.3.4:1"], ["b", "x"]]),
            "Node         Address\na-long-name  1.2.3.4:1\nb            x",
        )

    def test_cells_trimmed(self) -> None:
        """Cells are stripped before measuring, as columnize does."""
        self.assertEqual(columnize([[" a ", " b "], ["cc", "d"]]), "a   b\ncc  d")

    def test_empty_trailing_cells(self) -> None:
        """Short rows and empty last cells leave no trailing spaces."""
        self.assertEqual(columnize([["a", "b", "c"], ["dd", "", ""], ["e"]]), "a   b  c\ndd\ne")

    def test_no_rows(self) -> None:
        """Nothing in, nothing out."""
        self.assertEqual(columnize([]), "")

    def test_wide_characters(self) -> None:
        """CJK characters take two columns."""
        self.assertEqual(display_width("节点"), 4)
        self.assertEqual(columnize([["节点", "x"], ["abcde", "y"]]), "节点   x\nabcde  y")
