"""Show each dataset's freshness (the ``dataset_status_latest`` view), stale ones first.

With ``--fail-on-stale`` the exit status is 1 when any dataset is stale, for cron jobs and CI checks. A check
that cannot run (a location that does not exist or holds no table, a store that cannot be read) exits 2; pass
``--allow-empty`` when the location may hold no table yet.
"""

from __future__ import annotations

import argparse
import sys

from otel_datasink.commands._args import add_allow_empty_argument, add_view_arguments
from otel_datasink.commands._output import print_rows
from otel_datasink.commands.query import add_format_argument, fetch

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
    add_allow_empty_argument(parser)
    add_view_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Prints each dataset's freshness; 1 with ``--fail-on-stale`` when one is stale, else 0. A failure raises,
    for :func:`otel_datasink.cli.main` to report (exit status 2)."""
    columns, rows = fetch(args, QUERY)
    print_rows(columns, rows, args.format)
    stale = [row[0] for row in rows if row[1]]
    if stale:
        print(f"{len(stale)} stale dataset(s): {', '.join(stale)}", file=sys.stderr)
    return 1 if stale and args.fail_on_stale else 0
