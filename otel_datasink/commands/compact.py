"""Rewrite each partition's small Parquet files into files of about --target-size (default 128MiB).

Safe while jobs write and queries read: the new file lands before the old ones are removed, only the files
listed when the compaction started are removed, and the views ignore the duplicates in between. A compaction
stopped half-way (Ctrl-C, a crash) is finished by the next one, which also removes its half-written temporary
file. One compaction at a time per location: another one started meanwhile exits with status 75 and changes
nothing. Today's partition is compacted too unless --older-than is given. A location with no table (a typo) is
an error, as for query and status.

Then the closed days (the day before yesterday and older, UTC) are rolled up: job_runs_daily and
dataset_status_daily, which the views read instead of those days' rows, are written for every closed day new since
the last compaction or whose files changed (a replay, a backfill), whatever --table, --dt or --older-than say.
"""

from __future__ import annotations

import argparse
import datetime
import re
from typing import TYPE_CHECKING

from otel_datasink.commands._args import add_progress_argument, progress_bar, store_options
from otel_datasink.commands._errors import EXIT_BUSY, CommandError, describe, interrupted
from otel_datasink.sizes import human_size, parse_size

if TYPE_CHECKING:
    from otel_datasink.compact import Compacted
    from otel_datasink.writer import Writer

DEFAULT_TARGET_SIZE = 128 * 1024**2
"""The same as :data:`otel_datasink.compact.DEFAULT_TARGET_SIZE` (pinned by a test), which imports pyarrow."""
TABLE_NAMES = ("alerts", "dataset_checks", "dataset_status", "job_runs", "sla_results")
"""The tables of :data:`otel_datasink.schema.TABLES` (pinned by a test), which imports pyarrow."""


def _target_size(text: str) -> int:
    # Raised as argparse's own error, whose words are kept: a ValueError it words "invalid _target_size value".
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink compact``."""
    parser.add_argument("--table", choices=TABLE_NAMES, help="one table (default: every table)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--dt", metavar="YYYY-MM-DD", type=_day, help="one partition (UTC date)")
    when.add_argument("--older-than", type=int, metavar="DAYS", help="only partitions older than DAYS days")
    parser.add_argument(
        "--target-size",
        type=_target_size,
        default=DEFAULT_TARGET_SIZE,
        help=f"size of the files written (default {human_size(DEFAULT_TARGET_SIZE)})",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    add_progress_argument(parser)


def _day(text: str) -> str:
    # Checked by the parser: a bad --dt is a usage error like any other. A day that is no date (2026-13-01) would
    # name no partition and compact nothing, exit 0. The pattern first: Python 3.11's date.fromisoformat also
    # takes 20260527 and 2026-W22-3, which name no dt= folder either.
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise argparse.ArgumentTypeError(f"must be YYYY-MM-DD, not {text!r}")
    try:
        datetime.date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} ({error})") from None
    return text


def run(args: argparse.Namespace) -> int:
    """Plans, then compacts (or prints the plan with ``--dry-run``); 0. A location with no table or a store that
    fails raise (exit status 2); another compaction holding the location's lock, exit status 75; Ctrl-C prints
    what was done, then exit status 130."""
    from otel_datasink.compact import Compacted, compact, compaction_lock, partitions, plan
    from otel_datasink.lease import Busy, LeaseLost
    from otel_datasink.writer import Writer

    writer = Writer(store_options(args))
    _must_hold_tables(writer, args.location)
    tables = [args.table] if args.table else list(TABLE_NAMES)
    if args.dry_run:
        print(plan(writer, partitions(writer, tables, args.dt, args.older_than), args.target_size).describe())
        return 0
    result = Compacted()
    try:
        # Held from the plan on: a plan listed while another compaction runs is out of date at once.
        with compaction_lock(writer) as held:
            parts = partitions(writer, tables, args.dt, args.older_than)
            work = plan(writer, parts, args.target_size)
            with progress_bar(args, sum(item.size for item in work.bins), "compact") as bar:
                compact(
                    writer,
                    tables=tables,
                    dt=args.dt,
                    older_than_days=args.older_than,
                    target_size=args.target_size,
                    progress=bar.update,
                    result=result,
                    held=held,
                )
    except Busy as error:
        done = f"{_done(result)}, then: " if isinstance(error, LeaseLost) else ""
        raise CommandError(f"{done}{error}; try again once it is done", EXIT_BUSY) from None
    except KeyboardInterrupt:
        raise interrupted(f"{_done(result)}; the next compaction finishes the one in flight") from None
    except Exception as error:
        if not result.files_written:
            raise
        raise CommandError(f"{_done(result)}, then: {describe(error)}") from error
    print(
        f"compacted {len(parts)} partition(s): {result.files_before} -> {result.files_after} file(s); {_done(result)}"
    )
    return 0


def _done(result: Compacted) -> str:
    leftovers = result.temporaries_removed
    return (
        f"wrote {result.files_written} file(s) ({human_size(result.bytes_written)}) from {result.files_removed} "
        f"removed; finished {result.resumed} interrupted compaction(s)"
        + (f"; removed {leftovers} leftover temporary file(s)" if leftovers else "")
        + (f"; rolled up {result.rollups_written} day(s)" if result.rollups_written else "")
    )


def _must_hold_tables(writer: Writer, location: str) -> None:
    """Raises :class:`CommandError` when ``location`` is no folder (a typo, a missing bucket): compacting it
    would report "0 partitions" and exit 0, hiding the typo."""
    fs, root = writer.fs, writer.root
    if fs.isdir(root):
        return
    if fs.isfile(root):
        raise CommandError(f"{location} is a file, not a folder of tables")
    if "://" in location and not fs.exists(root.split("/", 1)[0]):
        raise CommandError(f"bucket {root.split('/', 1)[0]} of {location} does not exist")
    raise CommandError(f"{location} does not exist" if "://" not in location else f"nothing is stored under {location}")
