"""Show each dataset's freshness (the ``dataset_status_latest`` view), stale ones first.

With ``--fail-on-stale`` the exit status is 1 when any dataset is stale, for cron jobs and CI checks.
"""

from __future__ import annotations

import argparse
import sys

import duckdb

from otel_datasink.commands.ddl import add_view_arguments
from otel_datasink.commands.query import add_format_argument, fetch, print_rows

HELP = "show dataset freshness; --fail-on-stale exits 1 when any dataset is stale"

QUERY = """
SELECT dataset, is_stale, last_status, last_success_at, data_as_of, freshness_minutes, freshness_sla_minutes,
       record_count, last_job_name
FROM dataset_status_latest
ORDER BY is_stale DESC, dataset
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink status``."""
    add_format_argument(parser)
    parser.add_argument("--fail-on-stale", action="store_true", help="exit with status 1 when any dataset is stale")
    add_view_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Prints each dataset's freshness; 1 with ``--fail-on-stale`` when one is stale, or when the query fails."""
    try:
        columns, rows = fetch(args, QUERY)
    except (duckdb.Error, ValueError) as error:
        print(f"otel-datasink status: {error}", file=sys.stderr)
        return 1
    print_rows(columns, rows, args.format)
    stale = [row[0] for row in rows if row[1]]
    if stale:
        print(f"{len(stale)} stale dataset(s): {', '.join(stale)}", file=sys.stderr)
    return 1 if stale and args.fail_on_stale else 0
