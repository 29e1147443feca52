"""What the commands print: one renderer of result rows (``demo``, ``query``, ``status``) and sizes for humans.

A value prints the same in every table and CSV: booleans ``true``/``false`` and timestamps
``2026-05-27 06:00:00.000+00:00`` (UTC, milliseconds), as DuckDB and Athena write them; JSON keeps its own types.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO

FORMATS = ("table", "json", "csv")

_MIN_COLUMN = 8
"""A column is cut no narrower than this (or its header): narrower, its values say nothing."""
_GAP = "  "
_ELLIPSIS = "…"


def print_rows(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str = "table",
    out: TextIO | None = None,
    width: int | None = None,
) -> None:
    """Prints a result as an aligned text table, a JSON array of objects or CSV with a header.

    A table wider than ``width`` (default: the terminal's, see :func:`terminal_width`) has its widest values cut
    and then its last columns left out, and says so under the row count.
    """
    out = out or sys.stdout
    if fmt == "json":
        records = [dict(zip(columns, (json_value(v) for v in row), strict=True)) for row in rows]
        json.dump(records, out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([text(v, null="") for v in row] for row in rows)
    else:
        for line in table_lines(columns, rows, terminal_width(out) if width is None else width):
            print(line, file=out)


def terminal_width(out: TextIO) -> int | None:
    """The width to fit a table to: the terminal's when ``out`` is one, or ``$COLUMNS``; None (no limit) for a
    pipe or a file, whose reader wants every value."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    try:
        if not out.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return shutil.get_terminal_size().columns


def table_lines(columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None) -> list[str]:
    """The lines of an aligned text table (numbers right-aligned), its row count last; fitted to ``width``."""
    cells = [[text(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(_is_number(r[i]) or r[i] is None for r in rows) for i in range(len(columns))]
    shown = len(columns)
    if width is not None:
        widths = _narrowed(widths, columns, width)
        shown = _columns_that_fit(widths, width)

    def line(values: Sequence[str]) -> str:
        parts = [
            _cut(v, w).rjust(w) if right else _cut(v, w).ljust(w)
            for v, w, right in zip(values[:shown], widths[:shown], numeric[:shown], strict=True)
        ]
        return _GAP.join(parts).rstrip()

    lines = [line(list(columns)), line(["-" * w for w in widths])]
    lines.extend(line(row) for row in cells)
    footer = f"({len(rows)} row{'' if len(rows) == 1 else 's'}"
    cut = any(len(r[i]) > widths[i] for r in cells for i in range(shown))
    if shown < len(columns):
        footer += f"; {len(columns) - shown} column(s) not shown: {', '.join(columns[shown:])}"
    if shown < len(columns) or cut:
        footer += f"; values cut at the terminal's width end in {_ELLIPSIS}; use --format csv for every column"
    return [*lines, footer + ")"]


def _narrowed(widths: list[int], columns: Sequence[str], width: int) -> list[int]:
    """Column widths with the widest cut, one character at a time, until the table fits or none can be cut."""
    widths = list(widths)
    floors = [max(_MIN_COLUMN, len(c)) for c in columns]
    while _total(widths) > width:
        cuttable = [i for i, w in enumerate(widths) if w > floors[i]]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _columns_that_fit(widths: list[int], width: int) -> int:
    """How many leading columns fit in ``width`` (at least one: a table shows something)."""
    shown = len(widths)
    while shown > 1 and _total(widths[:shown]) > width:
        shown -= 1
    return shown


def _total(widths: Sequence[int]) -> int:
    return sum(widths) + len(_GAP) * (len(widths) - 1)


def _cut(value: str, width: int) -> str:
    return value if len(value) <= width else value[: max(0, width - 1)] + _ELLIPSIS


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def json_value(value: Any) -> Any:
    """``value`` as JSON: instants as ISO 8601 text, maps and lists recursively, anything else as its text."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def text(value: Any, null: str = "NULL") -> str:
    """``value`` as a table or CSV cell."""
    if value is None:
        return null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(json_value(value))
    return str(value)


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_size(size: float) -> str:
    """``25436648`` as ``24.3 MiB``: binary units, as ``--target-size`` reads them."""
    for unit in _UNITS[:-1]:
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} {_UNITS[-1]}"
