"""What the commands print: one renderer of result rows (``demo``, ``query``, ``status``).

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
FULL_OUTPUT_HINT = "use --format csv for every column and value"

_MIN_COLUMN = 8
"""The last column shown is cut no narrower than this: narrower, its values say nothing."""
_MAX_CELL = 40
"""Values are cut to this (or their header's width) in a table too wide for the terminal: ids and timestamps
(29 characters) stay whole, messages and attributes make room for more columns."""
_HIDDEN_NAMED = 5
"""Columns left out that the footer names; it counts the others."""
_GAP = "  "
_ELLIPSIS = "…"


def print_rows(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str = "table",
    out: TextIO | None = None,
    width: int | None = None,
    hint: str = FULL_OUTPUT_HINT,
    drop_first: Sequence[str] = (),
) -> None:
    """Prints a result as an aligned text table, a JSON array of objects or CSV with a header.

    A table wider than ``width`` (default: the terminal's, see :func:`terminal_width`) has its widest values cut,
    then the columns of ``drop_first`` left out (in that order, as many as it takes), then its last columns, and
    says so under the row count with ``hint``.
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
        fitted_to = terminal_width(out) if width is None else width
        for line in table_lines(columns, rows, fitted_to, hint, drop_first):
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


def table_lines(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    width: int | None = None,
    hint: str = FULL_OUTPUT_HINT,
    drop_first: Sequence[str] = (),
) -> list[str]:
    """The lines of an aligned text table (numbers right-aligned), its row count last; fitted to ``width``: long
    values cut to :data:`_MAX_CELL`, then the columns of ``drop_first`` left out until it fits, then as many
    leading columns as fit (the last one cut to fit). The footer then says what is not shown, and ``hint`` how to
    see it."""
    cells = [[text(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(_is_number(r[i]) or r[i] is None for r in rows) for i in range(len(columns))]
    shown = list(range(len(columns)))
    if width is not None and _total(widths) > width:
        widths = [min(w, max(_MAX_CELL, len(c))) for w, c in zip(widths, columns, strict=True)]
        shown = _columns_that_fit(widths, _kept(columns, widths, width, drop_first), width)
        last = shown[-1]
        widths[last] = max(_MIN_COLUMN, min(widths[last], width - _total([widths[i] for i in shown[:-1]]) - len(_GAP)))

    def cell(value: str, i: int) -> str:
        value = _cut(value, widths[i])
        return value.rjust(widths[i]) if numeric[i] else value.ljust(widths[i])

    def line(values: Sequence[str]) -> str:
        return _GAP.join(cell(values[i], i) for i in shown).rstrip()

    lines = [line(list(columns)), line(["-" * w for w in widths])]
    lines.extend(line(row) for row in cells)
    cut = any(len(r[i]) > widths[i] for r in cells for i in shown)
    hidden = [name for i, name in enumerate(columns) if i not in shown]
    return [*lines, _footer(len(rows), hidden, cut, hint)]


def _footer(rows: int, hidden: Sequence[str], cut: bool, hint: str) -> str:
    footer = f"({rows} row{'' if rows == 1 else 's'}"
    if hidden:
        names = ", ".join(hidden[:_HIDDEN_NAMED]) + (", ..." if len(hidden) > _HIDDEN_NAMED else "")
        footer += f"; {len(hidden)} more column(s) not shown: {names}"
    if cut:
        footer += f"; long values cut, ending in {_ELLIPSIS}"
    if hidden or cut:
        footer += f"; {hint}"
    return footer + ")"


def _kept(columns: Sequence[str], widths: list[int], width: int, drop_first: Sequence[str]) -> list[int]:
    """The indexes of ``columns`` left once those of ``drop_first`` are left out, in order, until they fit."""
    kept = list(range(len(columns)))
    for name in drop_first:
        if _total([widths[i] for i in kept]) <= width:
            break
        kept.remove(columns.index(name))
    return kept


def _columns_that_fit(widths: list[int], candidates: list[int], width: int) -> list[int]:
    """The leading ``candidates`` (column indexes) that fit in ``width``, the last possibly cut to
    :data:`_MIN_COLUMN` (at least one)."""
    shown = 1
    while (
        shown < len(candidates) and _total([widths[i] for i in candidates[:shown]]) + len(_GAP) + _MIN_COLUMN <= width
    ):
        shown += 1
    return candidates[:shown]


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
