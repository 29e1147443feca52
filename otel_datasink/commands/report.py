"""Write the dashboards of ``--location`` to one self-contained HTML file (no script, font or style from
anywhere else: it opens offline, from an e-mail attachment or an S3 link).

The page shows the last ``--days`` days (today included, UTC): the overview (runs, success rate, failing jobs,
stale datasets, hung runs, open alerts, each against the previous period), the jobs with their status strip
and duration trend, a page per job (runs on a timeline, duration percentiles per day, records with the volume
anomalies, recent failures with a ``--trace-url`` link, backfills apart), the datasets' freshness against their
SLA with a page per dataset (its lineage graph and latest checks), a failures heat map, the pipelines (a grid of
each one's tasks by its last runs, a page per recent run with its tasks on a Gantt and a ``--run-url`` link) and
the data-quality checks, failing first; an owner filter narrows every list. Charts are SVG drawn when the file
is built.

A location that exists but holds no table yet gives a page that says so; one that does not exist is an error
(exit status 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import BinaryIO

from otel_datasink.commands._args import add_page_arguments, add_progress_argument, check_trace_url, store_options
from otel_datasink.commands._errors import CommandError
from otel_datasink.sizes import human_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink report``."""
    parser.add_argument("--out", metavar="FILE", required=True, help="the HTML file to write ('-' for stdout)")
    add_page_arguments(parser)
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Builds the page and writes it to ``--out``; one line on stderr says what was written and how long it took."""
    from tqdm import tqdm

    from otel_datasink.report import LocationMissingError, build

    check_trace_url(args.trace_url, args.run_url)
    options = store_options(args)
    bar = tqdm(
        total=None, unit="chart", desc="report", file=sys.stderr, disable=args.no_progress or not sys.stderr.isatty()
    )
    try:
        with bar:
            report = build(
                options,
                days=args.days,
                now=args.now,
                trace_url=args.trace_url,
                run_url=args.run_url,
                progress=bar.update,
                on_total=lambda total: setattr(bar, "total", total),
            )
    except LocationMissingError as error:
        raise CommandError(str(error)) from error
    size = _write(args.out, report.html)
    what = f"{report.jobs} jobs, {report.datasets} datasets, {report.charts} charts"
    print(f"wrote {args.out}: {human_size(size)}, {what}, in {report.seconds:.1f}s", file=sys.stderr)
    return 0


def _write(out: str, html: str) -> int:
    encoded = html.encode("utf-8")
    if out == "-":
        _write_all(sys.stdout.buffer, encoded)
        return len(encoded)
    path = Path(out)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(encoded)
        os.replace(partial, path)  # a reader (a browser tab, an upload) never sees half a page
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise CommandError(f"cannot write {out}: {error.strerror or error}") from error
    return len(encoded)


def _write_all(stream: BinaryIO, data: bytes) -> None:
    """Writes every byte of ``data``, raising BrokenPipeError when the reader has gone (``| head``: exit status
    141, as ``query``). One ``write`` of more than a pipe holds can return having written only part, silently,
    when the reader goes meanwhile: the page was reported written, exit status 0."""
    view = memoryview(data)
    while view:
        view = view[stream.write(view) :]
