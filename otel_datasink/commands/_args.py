"""The options several commands share, each defined and read here once: the location's (added to every command
by :mod:`otel_datasink.cli`, read by :func:`store_options`), the view parameters, ``--format``,
``--allow-empty``, ``--no-progress``, and the pages' ``--days``, ``--trace-url`` and ``--now``.

Imported for ``otel-datasink --help`` too: what only a running command needs (DuckDB, sqlglot, pyarrow, tqdm) is
imported inside the function that uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
from typing import TYPE_CHECKING, Any

from otel_datasink import environment_variables as env
from otel_datasink.commands._errors import CommandError
from otel_datasink.config import DEFAULT_LOCATION, Options

if TYPE_CHECKING:
    from tqdm import tqdm

    from otel_datasink.catalog import ViewParameters

NOW_VARIABLE = "OTEL_DATASINK_REPORT_NOW"
"""For tests and benchmarks: the instant the pages are as of (ISO 8601), as ``--now``."""
DEFAULT_DAYS = 30
MAX_DAYS = 400

_STORE_HELP = (
    "S3 credentials come from the standard AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n"
    "(and AWS_SESSION_TOKEN), then AWS_PROFILE with ~/.aws/credentials and ~/.aws/config, then the\n"
    f"instance or task role; the region from AWS_REGION or {env.OTEL_EXPORTER_DATASINK_S3_REGION}."
)
"""Lines broken here: the help keeps the commands' docstrings as written (RawDescriptionHelpFormatter)."""


def add_location_arguments(
    parser: argparse.ArgumentParser, location_help: str, *, store: bool, maps_spans: bool
) -> None:
    """The location's options, read by :func:`store_options`: ``--location``; for a command that reads or writes
    the tables (``store``) ``--s3-endpoint-url`` and how S3 credentials are found; for one that turns spans into
    rows (``maps_spans``) ``--profile``."""
    group = parser.add_argument_group("location", _STORE_HELP if store else None)
    group.add_argument(
        "--location",
        default=os.environ.get(env.OTEL_EXPORTER_DATASINK_LOCATION) or DEFAULT_LOCATION,
        help=f"{location_help} (env {env.OTEL_EXPORTER_DATASINK_LOCATION}; default {DEFAULT_LOCATION})",
    )
    if store:
        group.add_argument(
            "--s3-endpoint-url",
            metavar="URL",
            help=f"an S3-compatible endpoint such as MinIO's (env {env.OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL}; "
            "default AWS)",
        )
    if maps_spans:
        group.add_argument(
            "--profile",
            help="producers whose spans are runs: default (all), contract, airflow, cicd, or a .toml mapping file "
            "(added to the built-ins); several separated by commas narrow to those "
            f"(env {env.OTEL_EXPORTER_DATASINK_PROFILE}; default 'default')",
        )


def store_options(args: argparse.Namespace, **options: Any) -> Options:
    """The :class:`Options` of the shared flags (``--location``, ``--s3-endpoint-url``, ``--profile``), each
    falling back to its environment variable; :class:`CommandError` for a location that is a file."""
    for name in ("s3_endpoint_url", "profile"):
        options.setdefault(name, getattr(args, name, None))
    resolved = Options.resolve(args.location, **options)
    _refuse_a_file(resolved)
    return resolved


def _refuse_a_file(options: Options) -> None:
    """Raises :class:`CommandError` when the location is a local file: read, it was empty tables (``query
    --allow-empty``), written, a failure at each write. Only a local one: on an object store a prefix may be an
    object's name and still have the tables' objects under it."""
    from fsspec.implementations.local import LocalFileSystem

    from otel_datasink.location import open_location

    fs, root = open_location(options)
    if isinstance(fs, LocalFileSystem) and fs.isfile(root):
        raise CommandError(
            f"{options.location} is a file, not a folder of tables (a location is a folder or a URL prefix)"
        )


def instant(text: str) -> datetime.datetime:
    """The type of a ``--now`` option (``alert``, ``report``): an ISO 8601 instant, UTC when it names no offset."""
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 instant: {text!r}") from None
    return (value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)).astimezone(datetime.timezone.utc)


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`~otel_datasink.catalog.ViewParameters` field, e.g. ``--window-days 30``."""
    from otel_datasink.catalog import ViewParameters

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
    """The :class:`~otel_datasink.catalog.ViewParameters` of parsed options; ValueError when they do not hold
    together (the command line's :func:`otel_datasink.cli.main` reports it on one line)."""
    from otel_datasink.catalog import ViewParameters

    return ViewParameters(**{field.name: getattr(args, field.name) for field in dataclasses.fields(ViewParameters)})


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    """``--format table|json|csv``, table by default."""
    from otel_datasink.commands._output import FORMATS  # csv and json: not for every --help

    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")


ALLOW_EMPTY_HINT = "--allow-empty accepts a location with no tables"
"""Said after the error of a location with no table (:class:`otel_datasink.local.NoTablesError`)."""


def add_allow_empty_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--allow-empty``: a location with no table (missing, empty) is empty tables rather than an error."""
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a location that does not exist or holds no table yet (empty tables) instead of failing",
    )


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


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bar (there is none either when stderr is not a terminal)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def progress_bar(args: argparse.Namespace, total: int | None, desc: str) -> tqdm:
    """A progress bar in bytes on stderr, shown only on a terminal and without ``--no-progress``."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        file=sys.stderr,
        disable=args.no_progress or not sys.stderr.isatty(),
    )


def positive_days(text: str) -> int:
    """``--days``: a whole number of days, 1 to :data:`MAX_DAYS`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 1 <= value <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_DAYS}, not {text}")
    return value


def add_page_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``report`` and ``serve`` share: ``--days``, ``--trace-url``, ``--run-url`` and the hidden
    ``--now``."""
    parser.add_argument(
        "--days",
        type=positive_days,
        default=DEFAULT_DAYS,
        metavar="N",
        help=f"days shown, today included, compared with the N days before (default {DEFAULT_DAYS})",
    )
    parser.add_argument(
        "--trace-url",
        metavar="TEMPLATE",
        help="trace link of a failed run, e.g. https://grafana/explore?traceId={trace_id}",
    )
    parser.add_argument(
        "--run-url",
        metavar="TEMPLATE",
        help="a pipeline run's link in its orchestrator, fields {run_id} {job_name} {trace_id}",
    )
    now = os.environ.get(NOW_VARIABLE)
    parser.add_argument("--now", type=instant, default=instant(now) if now else None, help=argparse.SUPPRESS)


def check_trace_url(template: str | None, run_url: str | None = None) -> None:
    """A ``--trace-url`` or ``--run-url`` with an unknown field fails the command at once (the fields of ``alert
    --trace-url``)."""
    from otel_datasink.alerts.conditions import check_template

    check_template(template, "--trace-url")
    check_template(run_url, "--run-url")
