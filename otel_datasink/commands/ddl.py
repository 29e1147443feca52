"""Print the Athena script for the tables at ``--location`` (an s3:// URL): the database, both tables with
``dt`` partition projection (no ``MSCK REPAIR`` ever), and the views. Run it in the Athena console or with
``aws athena start-query-execution``, one statement at a time.

``--location`` is ``s3://bucket/prefix``: a bucket named by S3's bucket naming rules and a prefix of S3's safe
key characters (letters, digits, ``! - _ . ( )`` and ``/``); anything else (quotes, spaces, newlines, ``*``)
is refused with a one-line message and exit status 2, before any SQL is printed."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from otel_datasink.catalog import DEFAULT_DATABASE, ViewParameters, athena_ddl

HELP = "print the Athena DDL (tables with partition projection) and views for an s3://bucket/prefix --location"


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`ViewParameters` field, e.g. ``--window-days 30``."""
    group = parser.add_argument_group("view parameters")
    for field in dataclasses.fields(ViewParameters):
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            type=int if field.type == "int" else float,
            default=field.default,
            metavar="N",
            help=f"{field.metadata['help']} (default {field.default})",
        )


def view_parameters(args: argparse.Namespace) -> ViewParameters:
    """The :class:`ViewParameters` of parsed options; exits with a message when they do not hold together."""
    try:
        return ViewParameters(**{field.name: getattr(args, field.name) for field in dataclasses.fields(ViewParameters)})
    except ValueError as error:
        print(f"otel-datasink: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink ddl``: the database and the view parameters."""
    parser.add_argument("--database", default=DEFAULT_DATABASE, help=f"Athena database (default {DEFAULT_DATABASE})")
    add_view_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Prints the Athena script; 2, with a one-line message and no SQL, when Athena cannot use the location
    (see :func:`otel_datasink.catalog.athena_location`) or the database."""
    try:
        script = athena_ddl(args.location, args.database, view_parameters(args))
    except ValueError as error:
        print(f"otel-datasink ddl: {error}", file=sys.stderr)
        return 2
    print(script)
    return 0
