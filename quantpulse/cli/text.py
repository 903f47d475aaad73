"""Plain-text output for the commands: aligned tables and bar charts for a terminal."""

from __future__ import annotations

from collections.abc import Sequence

BAR = "\u2588"  # a full block


def table(rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-aligned columns, two spaces apart."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(cells[0]))] if cells else []
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def bars(values: Sequence[int], width: int = 40) -> list[str]:
    """One bar per value, the largest ``width`` characters long (at least one for non-zero)."""
    top = max(values, default=0)
    return [BAR * (max(1, round(value / top * width)) if value else 0) for value in values]
