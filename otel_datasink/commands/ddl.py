"""Print the Athena script for the tables at ``--location`` (an s3:// URL): the database, both tables with
``dt`` partition projection (no ``MSCK REPAIR`` ever), and the views. Run it in the Athena console or with
``aws athena start-query-execution``, one statement at a time.

``--location`` is ``s3://bucket/prefix``: a bucket named by S3's bucket naming rules and a prefix of S3's safe
key characters (letters, digits, ``! - _ . ( )`` and ``/``); anything else (quotes, spaces, newlines, ``*``)
is refused with a one-line message and exit status 2, before any SQL is printed.

With ``--duckdb FILE`` it writes a DuckDB database file instead, for BI tools (Superset, Metabase, Grafana's
DuckDB data source) and other programs: the same tables and views, reading ``--location`` (a local folder or any
fsspec URL) whenever they are queried, so they see the runs written since. A local location is read by its
absolute path. An ``s3://`` one is read by the reader's DuckDB with its httpfs extension and credentials of its
own: no credential is written into the file (see the README). An existing FILE is refused unless ``--force``
(then replaced at once, whole); a location with no table is refused unless ``--allow-empty``.
"""

from __future__ import annotations

import argparse

from otel_datasink.catalog import DEFAULT_DATABASE, VIEWS, athena_ddl
from otel_datasink.commands._args import (
    ALLOW_EMPTY_HINT,
    add_allow_empty_argument,
    add_view_arguments,
    store_options,
    view_parameters,
)
from otel_datasink.commands._errors import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink ddl``: the database, ``--duckdb FILE`` and the view parameters."""
    parser.add_argument("--database", default=DEFAULT_DATABASE, help=f"Athena database (default {DEFAULT_DATABASE})")
    duckdb = parser.add_argument_group("DuckDB database file (for BI tools)")
    duckdb.add_argument(
        "--duckdb",
        metavar="FILE",
        help="write a DuckDB database file whose views read --location, instead of printing the Athena script",
    )
    duckdb.add_argument("--force", action="store_true", help="with --duckdb: replace FILE if it exists")
    add_allow_empty_argument(duckdb)
    add_view_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Prints the Athena script, or writes ``--duckdb FILE``. Raises ValueError, before printing anything, when
    Athena cannot use the location (see :func:`otel_datasink.catalog.athena_location`) or the database, or the
    view parameters do not hold together: :func:`otel_datasink.cli.main` reports it as one line, exit status 2."""
    if args.duckdb is not None:
        return _write_duckdb(args)
    if args.force or args.allow_empty:
        raise CommandError("--force and --allow-empty go with --duckdb FILE")
    script = athena_ddl(args.location, args.database, view_parameters(args))
    print(script)
    return 0


def _write_duckdb(args: argparse.Namespace) -> int:
    from fsspec.utils import get_protocol

    from otel_datasink import local  # DuckDB: imported only to write its file, not for the Athena script

    options = store_options(args)
    try:
        path = local.write_database(
            args.duckdb,
            options.location,
            parameters=view_parameters(args),
            must_exist=not args.allow_empty,
            replace=args.force,
            s3_endpoint_url=options.s3_endpoint_url,
        )
    except local.NoTablesError as error:
        raise CommandError(f"{error} ({ALLOW_EMPTY_HINT})") from error
    except FileExistsError as error:
        raise CommandError(f"{error}: give --force to replace it") from error
    print(f"wrote {path}: the tables and {len(VIEWS)} views of {options.location}")
    if get_protocol(options.location) not in ("file", "local"):
        print(
            f"its views read {options.location} when queried, with the reader's credentials (none are in the file): "
            "the reader's DuckDB loads httpfs and creates a secret first (CREATE SECRET (TYPE s3, ...))"
        )
    return 0
