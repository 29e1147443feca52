"""Run one SQL query on the tables and views of ``--location`` with DuckDB and print the result.

The tables are ``job_runs`` and ``dataset_status``; the views are those of ``otel-datasink ddl``. With
``--dialect athena`` the query is read as Athena (Trino) SQL and transpiled, so a query written for Athena
runs here unchanged (drop the database prefix).

A location that does not exist or holds no table is an error (exit status 2), so that a mistyped path fails a
check instead of answering "no rows"; ``--allow-empty`` accepts it (empty tables).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from otel_datasink import local
from otel_datasink.catalog import to_duckdb
from otel_datasink.cli import CommandError
from otel_datasink.commands.ddl import add_view_arguments, view_parameters

HELP = "run a SQL query on the tables and views with DuckDB (table, json or csv output)"
FORMATS = ("table", "json", "csv")


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    """``--format table|json|csv``, table by default."""
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")


def add_allow_empty_argument(parser: argparse.ArgumentParser) -> None:
    """``--allow-empty``: a location with no table (missing, empty) is empty tables rather than an error."""
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a location that does not exist or holds no table yet (empty tables) instead of failing",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink query``: the SQL, its dialect, the output format and the view parameters."""
    parser.add_argument("sql", help='the query, e.g. "SELECT * FROM stale_datasets"')
    add_format_argument(parser)
    add_allow_empty_argument(parser)
    parser.add_argument(
        "--dialect",
        choices=("duckdb", "athena"),
        default="duckdb",
        help="SQL dialect of the query (default duckdb; athena is transpiled to DuckDB)",
    )
    add_view_arguments(parser)


def fetch(args: argparse.Namespace, sql: str) -> tuple[list[str], list[tuple]]:
    """Columns and rows of ``sql`` (DuckDB) over ``--location`` with the views of the parsed view options;
    no columns and no rows for a statement that returns none.

    Raises :class:`CommandError` when the location holds no table, unless ``--allow-empty``.
    """
    try:
        con = local.connect(args.location, parameters=view_parameters(args), must_exist=not args.allow_empty)
    except local.NoTablesError as error:
        raise CommandError(f"{error} (--allow-empty accepts a location with no tables)") from error
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description] if cursor.description else []
    return columns, cursor.fetchall() if columns else []


def run(args: argparse.Namespace) -> int:
    """Runs the query and prints its rows (0); a failure raises, for :func:`otel_datasink.cli.main` to report."""
    sql = to_duckdb(args.sql, read="athena") if args.dialect == "athena" else args.sql
    columns, rows = fetch(args, sql)
    if columns:
        print_rows(columns, rows, args.format)
    return 0


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, out: TextIO | None = None) -> None:
    """Prints a result as an aligned text table, a JSON array of objects or CSV with a header."""
    out = out or sys.stdout
    if fmt == "json":
        records = [dict(zip(columns, (_json_value(v) for v in row), strict=True)) for row in rows]
        json.dump(records, out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_text(v, null="") for v in row] for row in rows)
    else:
        cells = [[_text(v) for v in row] for row in rows]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        numeric = [bool(rows) and all(_is_number(r[i]) or r[i] is None for r in rows) for i in range(len(columns))]

        def line(values: Sequence[str]) -> str:
            parts = [v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric, strict=True)]
            return "  ".join(parts).rstrip()

        print(line(list(columns)), file=out)
        print(line(["-" * w for w in widths]), file=out)
        for row in cells:
            print(line(row), file=out)
        print(f"({len(rows)} row{'' if len(rows) == 1 else 's'})", file=out)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _text(value: Any, null: str = "NULL") -> str:
    if value is None:
        return null
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(_json_value(value))
    return str(value)
