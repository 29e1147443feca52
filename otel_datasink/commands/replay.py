"""Write OTLP JSON Lines files (one TracesData object per line, as the OpenTelemetry file exporter writes them;
gzip too) and OpenLineage JSON Lines files (one RunEvent per line, as the OpenLineage client's file transport
writes them) to the tables, through the same mapping and writer as live spans.

Lines that are not OTLP JSON are skipped and listed by number; the rest is written. Replaying a file twice
changes no view's answer: the rows are the same, and the views collapse duplicates.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from otel_datasink import semconv
from otel_datasink.commands._args import add_progress_argument, progress_bar, store_options
from otel_datasink.commands._errors import CommandError, describe, interrupted

if TYPE_CHECKING:
    from otel_datasink.replay import Summary

FORMATS = ("auto", "otlp", "openlineage")
"""The same as :data:`otel_datasink.replay.FORMATS`, which is not imported for ``--help``."""

DEFAULT_BATCH_SPANS = 20_000
"""Spans written together; the same as :data:`otel_datasink.replay.DEFAULT_BATCH_SPANS`, which is not imported
for ``--help``."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink replay`` (``--profile`` is the shared one)."""
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="OTLP or OpenLineage JSON Lines files (local paths or fsspec URLs; gzip too)",
    )
    parser.add_argument(
        "--format",
        dest="input_format",
        choices=FORMATS,
        default="auto",
        help="what the lines are: auto (told line by line: OpenLineage events have eventType/run/job, OTLP "
        "resourceSpans; the default), otlp, or openlineage",
    )
    parser.add_argument(
        "--openlineage-namespace-prefix",
        action="store_true",
        default=None,
        help="name OpenLineage jobs <job namespace>/<job name> "
        "(env OTEL_EXPORTER_DATASINK_OPENLINEAGE_NAMESPACE_PREFIX)",
    )
    parser.add_argument(
        "--run-type",
        choices=semconv.RUN_TYPES,
        help="set job.run.type on job spans that carry none (e.g. replay, for history never written live)",
    )
    parser.add_argument(
        "--batch-spans",
        type=int,
        default=DEFAULT_BATCH_SPANS,
        help=f"spans written together (one file per table and day per batch; default {DEFAULT_BATCH_SPANS})",
    )
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Replays the files and prints the summary (0). A file that cannot be read, a store that fails or an unknown
    profile raise :class:`CommandError` (exit status 2); Ctrl-C prints what was written, then exit status 130."""
    from otel_datasink.profiles import ProfileError
    from otel_datasink.replay import Summary, file_size, lineage_profile, open_pipeline, replay
    from otel_datasink.writer import WriteError

    try:
        options = store_options(args, openlineage_namespace_prefix=args.openlineage_namespace_prefix)
        pipeline = open_pipeline(options, args.run_type)
    except ProfileError as error:
        raise CommandError(str(error)) from error
    bar = progress_bar(args, sum(file_size(path) for path in args.files) or None, "replay")
    # Filled in as the files are read: what was written is known even when the replay is cut short.
    summary = Summary()
    try:
        with bar:
            replay(
                args.files,
                pipeline.writer,
                pipeline.profile,
                batch_spans=max(1, args.batch_spans),
                progress=bar.update,
                summary=summary,
                input_format=args.input_format,
                lineage=lineage_profile(args.run_type),
                namespace_prefix=options.openlineage_namespace_prefix,
            )
    except KeyboardInterrupt:
        print(summary.describe())
        raise interrupted(
            f"{_written(summary)} before it (a batch in flight may be partly written); replaying the files again "
            "adds only duplicates, which the views collapse"
        ) from None
    except OSError as error:
        cause = f"cannot read {error.filename or ''}: {error.strerror or error}"
        raise CommandError(_and_before(cause, summary)) from error
    except WriteError as error:
        raise CommandError(_and_before(describe(error), summary)) from error
    print(summary.describe())
    return 0


def _written(summary: Summary) -> str:
    return f"wrote {summary.rows_written} row(s) in {summary.files_written} file(s)"


def _and_before(cause: str, summary: Summary) -> str:
    """``cause``, then what was written before it when anything was (those rows stay)."""
    return f"{cause} (before it: {_written(summary)}, which stay)" if summary.files_written else cause
