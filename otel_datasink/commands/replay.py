"""Write OTLP JSON Lines files (one TracesData object per line, as the OpenTelemetry file exporter writes them;
gzip too) to the tables, through the same profile, mapping and writer as live spans.

Lines that are not OTLP JSON are skipped and listed by number; the rest is written. Replaying a file twice
changes no view's answer: the rows are the same, and the views collapse duplicates.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from otel_datasink import semconv
from otel_datasink.config import Options
from otel_datasink.profiles import ProfileError, load_profile
from otel_datasink.replay import DEFAULT_BATCH_SPANS, file_size, replay, with_run_type
from otel_datasink.writer import WriteError, Writer

HELP = "write OTLP JSON Lines files (.jsonl, .jsonl.gz) to the tables"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink replay``."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="OTLP JSON Lines files (local paths or fsspec URLs)")
    parser.add_argument(
        "--profile",
        help="mapping profile: default, airflow, cicd or a .toml mapping file (env OTEL_EXPORTER_DATASINK_PROFILE)",
    )
    parser.add_argument(
        "--run-type",
        choices=semconv.RUN_TYPES,
        help="set job.run.type on job spans that carry none (e.g. replay, for history never written live)",
    )
    parser.add_argument(
        "--batch-spans", type=int, default=DEFAULT_BATCH_SPANS, help="spans written together (one file per batch)"
    )
    add_progress_argument(parser)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bar (there is none either when stderr is not a terminal)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def progress_bar(args: argparse.Namespace, total: int | None, desc: str) -> tqdm:
    """A progress bar in bytes on stderr, shown only on a terminal and without ``--no-progress``."""
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=desc,
        file=sys.stderr,
        disable=args.no_progress or not sys.stderr.isatty(),
    )


def run(args: argparse.Namespace) -> int:
    """Replays the files and prints the summary; 1 when a file cannot be read or the store fails, 2 for an
    unknown profile."""
    options = Options.resolve(args.location, profile=args.profile)
    try:
        profile = load_profile(options.profile)
    except ProfileError as error:
        print(f"otel-datasink replay: {error}", file=sys.stderr)
        return 2
    if args.run_type:
        profile = with_run_type(profile, args.run_type)
    writer = Writer(options)
    bar = progress_bar(args, sum(file_size(path) for path in args.files) or None, "replay")
    try:
        with bar:
            summary = replay(args.files, writer, profile, batch_spans=max(1, args.batch_spans), progress=bar.update)
    except OSError as error:
        print(f"otel-datasink replay: cannot read {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 1
    except WriteError as error:
        print(f"otel-datasink replay: {error}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0
