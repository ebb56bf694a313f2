"""Evaluation summary as in the paper's tables: one row per subject or capture,
one column per region, cells "mean ± std" (e.g. "1.08 ± 0.16" mm).

Regions are matched case-insensitively, so engine output keyed "eyes" lands in the
"Eyes" column; regions beyond the default columns (texture errors, ...) get columns
of their own in first-seen order.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem,
                               QWidget)

DEFAULT_COLUMNS: tuple[str, ...] = ("Eyes", "Mouth", "Face")
MISSING = "–"
Row = tuple[str, Mapping[str, tuple[float, float]]]


def format_mean_std(mean: float, std: float, decimals: int = 2) -> str:
    """"1.08 ± 0.16" style cell text."""
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


class SummaryTable(QTableWidget):
    """Read-only table of per-region mean ± std errors."""

    def __init__(self, parent: QWidget | None = None,
                 columns: Sequence[str] = DEFAULT_COLUMNS, decimals: int = 2,
                 unit: str = "mm") -> None:
        super().__init__(parent)
        self._default_columns = list(columns)
        self._decimals = decimals
        self._unit = unit
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAlternatingRowColors(True)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.set_rows([])

    def set_rows(self, rows: Sequence[Row]) -> None:
        """Fill the table: [(name, {region: (mean, std)})]; missing regions show "–"."""
        columns = self._columns_for(rows)
        self.clear()
        self.setColumnCount(len(columns))
        self.setRowCount(len(rows))
        self.setHorizontalHeaderLabels(columns)
        for c, col in enumerate(columns):
            self.horizontalHeaderItem(c).setToolTip(f"{col} error, mean ± std ({self._unit})")
        self.setVerticalHeaderLabels([name for name, _ in rows])
        for r, (_name, regions) in enumerate(rows):
            by_key = {key.lower(): value for key, value in regions.items()}
            for c, col in enumerate(columns):
                value = by_key.get(col.lower())
                text = MISSING if value is None else format_mean_std(*value, self._decimals)
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.setItem(r, c, item)

    def cell_text(self, row: int, column: str) -> str:
        """Text of the cell in a row under a column title (case-insensitive)."""
        for c in range(self.columnCount()):
            if self.horizontalHeaderItem(c).text().lower() == column.lower():
                return self.item(row, c).text()
        raise KeyError(f"no column {column!r}")

    def _columns_for(self, rows: Sequence[Row]) -> list[str]:
        columns = list(self._default_columns)
        known = {c.lower() for c in columns}
        for _name, regions in rows:
            for key in regions:
                if key.lower() not in known:
                    known.add(key.lower())
                    columns.append(key[:1].upper() + key[1:])
        return columns
