"""Rewrite each partition's small Parquet files into files of about --target-size (default 128MB).

Safe while jobs write and queries read: the new file lands before the old ones are removed, only the files
listed when the compaction started are removed, and the views ignore the duplicates in between. A compaction
stopped half-way is finished by the next one. Today's partition is compacted too unless --older-than is given.
"""

from __future__ import annotations

import argparse
import re
import sys

from otel_datasink.commands.replay import add_progress_argument, progress_bar
from otel_datasink.compact import DEFAULT_TARGET_SIZE, compact, partitions, plan
from otel_datasink.config import Options
from otel_datasink.schema import TABLES
from otel_datasink.writer import Writer

HELP = "rewrite small Parquet files into files of about --target-size, partition by partition"

_UNITS = {"": 1, "B": 1, "KB": 1024, "K": 1024, "MB": 1024**2, "M": 1024**2, "GB": 1024**3, "G": 1024**3}


def parse_size(text: str) -> int:
    """Bytes of a size such as ``128MB``, ``1G`` or ``4096``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B?)\s*", text.upper())
    if match is None or match.group(2) not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 128MB, 1GB)")
    size = int(float(match.group(1)) * _UNITS[match.group(2)])
    if size <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink compact``."""
    parser.add_argument("--table", choices=sorted(TABLES), help="one table (default: both)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--dt", metavar="YYYY-MM-DD", help="one partition (UTC date)")
    when.add_argument("--older-than", type=int, metavar="DAYS", help="only partitions older than DAYS days")
    parser.add_argument(
        "--target-size", type=parse_size, default=DEFAULT_TARGET_SIZE, help="size of the files written (default 128MB)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Plans, then compacts (or prints the plan with ``--dry-run``); 0, or 2 for a bad ``--dt``."""
    writer = Writer(Options.resolve(args.location))
    tables = [args.table] if args.table else list(TABLES)
    if args.dt is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.dt):
        print(f"otel-datasink compact: --dt must be YYYY-MM-DD, not {args.dt!r}", file=sys.stderr)
        return 2
    parts = partitions(writer, tables, args.dt, args.older_than)
    work = plan(writer, parts, args.target_size)
    if args.dry_run:
        print(work.describe())
        return 0
    bar = progress_bar(args, sum(item.size for item in work.bins), "compact")
    with bar:
        result = compact(
            writer,
            tables=tables,
            dt=args.dt,
            older_than_days=args.older_than,
            target_size=args.target_size,
            progress=bar.update,
        )
    print(
        f"compacted {len(parts)} partition(s): {result.files_before} -> {result.files_after} file(s); "
        f"wrote {result.files_written} file(s) ({result.bytes_written} bytes) from {result.files_removed} "
        f"removed; finished {result.resumed} interrupted compaction(s)"
    )
    return 0
