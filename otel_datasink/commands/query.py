"""Run one SQL query on the tables and views of ``--location`` with DuckDB and print the result.

The tables are ``job_runs`` and ``dataset_status``; the views are those of ``otel-datasink ddl``. With
``--dialect athena`` the query is read as Athena (Trino) SQL and transpiled, so a query written for Athena
runs here unchanged (drop the database prefix).

A location that does not exist or holds no table is an error (exit status 2), so that a mistyped path fails a
check instead of answering "no rows"; ``--allow-empty`` accepts it (empty tables).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from otel_datasink.cli import CommandError, store_options
from otel_datasink.commands._args import ALLOW_EMPTY_HINT, add_allow_empty_argument, add_view_arguments, view_parameters
from otel_datasink.commands._output import FORMATS, print_rows

if TYPE_CHECKING:
    import sqlglot.errors

__all__ = ["FORMATS", "add_format_argument", "fetch", "print_rows"]


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    """``--format table|json|csv``, table by default."""
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")


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
    from otel_datasink import local  # DuckDB: imported by the commands that query, not by every --help

    options = store_options(args)
    try:
        con = local.connect(
            options.location,
            parameters=view_parameters(args),
            must_exist=not args.allow_empty,
            s3_endpoint_url=options.s3_endpoint_url,
        )
    except local.NoTablesError as error:
        raise CommandError(f"{error} ({ALLOW_EMPTY_HINT})") from error
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description] if cursor.description else []
    return columns, cursor.fetchall() if columns else []


def run(args: argparse.Namespace) -> int:
    """Runs the query and prints its rows (0); a failure raises, for :func:`otel_datasink.cli.main` to report."""
    sql = athena_to_duckdb(args.sql) if args.dialect == "athena" else args.sql
    columns, rows = fetch(args, sql)
    if columns:
        print_rows(columns, rows, args.format)
    return 0


def athena_to_duckdb(sql: str) -> str:
    """``sql`` read as Athena (Trino) SQL, in DuckDB's; :class:`CommandError` saying where it does not parse."""
    import sqlglot.errors

    from otel_datasink.catalog import to_duckdb

    try:
        return to_duckdb(sql, read="athena")
    except sqlglot.errors.SqlglotError as error:
        raise CommandError(f"--dialect athena: {_parse_error(error)}") from error


def _parse_error(error: sqlglot.errors.SqlglotError) -> str:
    """sqlglot's first error as ``cannot parse the query at line L, column C near 'X': <what>``; its message
    alone carries terminal escapes and a Python class name."""
    details = getattr(error, "errors", None) or []
    if not details:
        return f"cannot parse the query: {error}"
    first = details[0]
    what = str(first.get("description") or error).split(" for <class", 1)[0]
    near = str(first.get("highlight") or "").strip()
    place = f" at line {first.get('line')}, column {first.get('col')}" if first.get("line") else ""
    return f"cannot parse the query{place}{f' near {near!r}' if near else ''}: {what}"
