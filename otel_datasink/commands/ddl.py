"""Print the Athena script for the tables at ``--location`` (an s3:// URL): the database, both tables with
``dt`` partition projection (no ``MSCK REPAIR`` ever), and the views. Run it in the Athena console or with
``aws athena start-query-execution``, one statement at a time.

``--location`` is ``s3://bucket/prefix``: a bucket named by S3's bucket naming rules and a prefix of S3's safe
key characters (letters, digits, ``! - _ . ( )`` and ``/``); anything else (quotes, spaces, newlines, ``*``)
is refused with a one-line message and exit status 2, before any SQL is printed."""

from __future__ import annotations

import argparse

from otel_datasink.catalog import DEFAULT_DATABASE, athena_ddl
from otel_datasink.commands._args import add_view_arguments, view_parameters


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink ddl``: the database and the view parameters."""
    parser.add_argument("--database", default=DEFAULT_DATABASE, help=f"Athena database (default {DEFAULT_DATABASE})")
    add_view_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Prints the Athena script. Raises ValueError, before printing anything, when Athena cannot use the location
    (see :func:`otel_datasink.catalog.athena_location`) or the database, or the view parameters do not hold
    together: :func:`otel_datasink.cli.main` reports it as one line, exit status 2."""
    script = athena_ddl(args.location, args.database, view_parameters(args))
    print(script)
    return 0
