"""Plain-text tables for the terminal (``distproxy demo``, ``distproxy stats``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

COLUMN_GAP = "  "


def format_columns(rows: Sequence[Sequence[str]], right: Collection[int] = (),
                   underline: bool = False) -> list[str]:
    """``rows[0]`` is the header. Columns are padded to their widest cell; the column
    indexes in ``right`` are right-aligned (numbers); ``underline`` adds a dashed rule
    under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        cells = (cell.rjust(width) if i in right else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths)))
        return COLUMN_GAP.join(cells).rstrip()

    out = [line(rows[0])]
    if underline:
        out.append(COLUMN_GAP.join("-" * width for width in widths))
    out.extend(line(row) for row in rows[1:])
    return out
