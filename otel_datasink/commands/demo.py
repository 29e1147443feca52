"""Run a small instrumented example (batch runs, one failing, a streaming job, two datasets) and print the tables.

The rows go through the real :class:`DatasinkSpanProcessor`. When it reports that they were not all written (a
folder that cannot be created, a read-only disk, a missing bucket), the demo fails with the store's error
(exit status 2) instead of printing empty tables.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from types import TracebackType
from typing import TYPE_CHECKING

from otel_datasink.commands._args import store_options
from otel_datasink.commands._errors import CommandError
from otel_datasink.commands._output import print_rows

if TYPE_CHECKING:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from otel_datasink.config import Options
    from otel_datasink.processor import DatasinkSpanProcessor


_GIVE_UP_MILLIS = 1000
"""How long the demo's shutdown waits once a flush has failed: the rows are lost anyway, and the processor
would otherwise retry for its whole ``timeout`` again."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``otel-datasink demo``."""
    parser.add_argument("--micro-batches", type=int, default=3, help="micro-batches of the streaming job")


def run(args: argparse.Namespace) -> int:
    """Runs the example jobs into ``--location`` and prints the tables (0); raises :class:`CommandError` when the
    processor reports rows it did not write."""
    # Imported here: the SDK and the processor (pyarrow, fsspec) are the demo's, not every command's.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from otel_datasink import local  # noqa: F401 - without the query extra, fail before any job runs, not after
    from otel_datasink.processor import DatasinkSpanProcessor

    options = store_options(args)
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-datasink-demo"}))
    processor = DatasinkSpanProcessor(
        options.location, profile=options.profile, s3_endpoint_url=options.s3_endpoint_url
    )
    provider.add_span_processor(processor)
    # The processor logs each failed attempt; the demo reports the outcome once, so they are shown only with -v.
    with _StoreWarnings(show=getattr(args, "verbose", 0) > 0) as warnings:
        _run_jobs(provider.get_tracer("otel_datasink.demo"), args.micro_batches)
        failure = _write_all(provider, processor)
    if failure:
        raise CommandError(f"could not write to {args.location}: {warnings.cause() or failure}")
    print(f"wrote to {args.location}\n")
    _print_tables(options)
    return 0


def _write_all(provider: TracerProvider, processor: DatasinkSpanProcessor) -> str | None:
    """Flushes and shuts the provider down; what went wrong by the processor's own account, or None."""
    # force_flush is the processor's report: False when a write failed for good or outlasted its timeout.
    written = provider.force_flush(timeout_millis=int(processor.options.timeout * 1000) + 5000)
    processor.shutdown(timeout_millis=None if written else _GIVE_UP_MILLIS)
    provider.shutdown()  # the processor's second shutdown is a no-op; the provider's own end
    if not written:
        return f"the rows were not written within {processor.options.timeout:g}s"
    if processor.dropped_spans or processor.dropped_rows:
        return f"{processor.dropped_spans} span(s) and {processor.dropped_rows} row(s) were dropped"
    return None


class _StoreWarnings(logging.Handler):
    """Keeps the warnings of otel_datasink's loggers while in use; ``show=False`` keeps them off stderr."""

    def __init__(self, show: bool) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._show = show
        self._logger = logging.getLogger("otel_datasink")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def cause(self) -> str | None:
        """The last store error the processor logged (the exception it logged with), else its last warning."""
        for record in reversed(self.records):
            errors = [arg for arg in record.args or () if isinstance(arg, BaseException)]
            if errors:
                return str(errors[-1])
        return self.records[-1].getMessage() if self.records else None

    def __enter__(self) -> _StoreWarnings:
        self._propagate = self._logger.propagate
        self._logger.addHandler(self)
        self._logger.propagate = self._show
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate


def _run_jobs(tracer: trace.Tracer, micro_batches: int) -> None:
    from otel_datasink.api import job_run

    rng = random.Random(7)
    for attempt in (1, 2):
        try:
            with job_run("ingest_orders", dataset="orders", attempt=attempt, tracer=tracer) as run:
                rows = rng.randint(900, 1100)
                run.add_records(rows)
                if attempt == 1:
                    raise ConnectionError("source database timed out")
                run.dataset_updated(
                    "orders", records_written=rows, record_count=50_000 + rows, freshness_sla_minutes=60
                )
        except ConnectionError:
            pass
    with job_run("build_customers", dataset="customers", tracer=tracer) as run:
        run.add_records(250)
    for _ in range(micro_batches):
        with job_run("stream_clicks", job_type="streaming", tracer=tracer) as run:
            run.add_records(rng.randint(40, 60))
            run.dataset_updated("clicks", records_written=run.records_processed, freshness_sla_minutes=5)
        time.sleep(0.01)


def _print_tables(options: Options) -> None:
    """Each table as ``otel-datasink query`` prints it (the same renderer: the same values, the same width)."""
    from otel_datasink.local import connect

    con = connect(options.location, s3_endpoint_url=options.s3_endpoint_url)
    for title, query in _QUERIES:
        print(title)
        cursor = con.execute(query)
        print_rows([d[0] for d in cursor.description], cursor.fetchall(), hint=_HINT)
        print()
    print(f'Query them yourself: otel-datasink query --location {options.location} "SELECT * FROM job_runs_latest"')


_HINT = "see them all with otel-datasink query --format csv"

_QUERIES = (
    (
        "job_runs (every state of every run; the demo appends on each call)",
        "SELECT job_name, job_type, status, dataset, start_time, duration_ms, records_processed, error_type "
        "FROM job_runs ORDER BY event_time, status",
    ),
    (
        "dataset_status",
        "SELECT dataset, status, updated_at, records_written, record_count, job_name "
        "FROM dataset_status ORDER BY event_time",
    ),
    (
        "dataset_status_latest (one row per dataset)",
        "SELECT dataset, last_status, last_success_at, record_count, freshness_minutes, freshness_sla_minutes, "
        "is_stale FROM dataset_status_latest ORDER BY dataset",
    ),
)
