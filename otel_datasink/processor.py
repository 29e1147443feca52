"""``DatasinkSpanProcessor``: STARTED rows when job spans start, terminal rows when they end.

The job's threads only append the span to a bounded deque (as the SDK's BatchSpanProcessor does); a
background worker maps and writes. A slow or dead store never blocks the job: rows wait in memory and are
retried on the next flush, and only past ``max_queue_size`` are the oldest dropped, logged and counted.

The worker maps each wake-up's spans at once but writes when rows have waited ``schedule_delay``, when a
table has ``max_queue_size`` rows (at most 8192), or on ``force_flush``/``shutdown``: a busy job then writes
files of thousands of rows rather than one small file per export batch (benchmarks/README.md).

A job that exits without calling ``shutdown()`` still has its rows written: see :mod:`otel_datasink.at_exit`.

Its counts (spans processed and dropped, rows written and dropped, failed writes) are attributes, and are reported
through the OpenTelemetry metrics API at collection time: see :mod:`otel_datasink.selfmetrics`.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import time
import weakref
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_datasink import sdk
from otel_datasink.at_exit import track_for_exit
from otel_datasink.mapping import OpenSpans, SpanRecord, Truncation, map_records
from otel_datasink.pipeline import Pipeline
from otel_datasink.schema import Rows, count_future_dated
from otel_datasink.selfmetrics import (
    FUTURE_DATED_ROWS,
    QUEUE_FULL,
    Instrument,
    Reading,
    error_counts,
    error_type,
    observe,
    per_table,
    truncation_instruments,
)
from otel_datasink.writer import WriteError

_logger = logging.getLogger(__name__)

_MAX_FILE_ROWS = 8192
"""Most rows a busy job's pending rows gather before they are written, whatever ``max_queue_size``: past a few
thousand rows a file costs little less per row, and a larger one holds the GIL longer at once."""


class DatasinkSpanProcessor(SpanProcessor):
    """Writes job spans to ``job_runs`` / ``dataset_status`` at ``location`` from a background thread.

    ``location`` and ``options`` are those of :class:`otel_datasink.config.Options`; anything not given
    comes from the ``OTEL_EXPORTER_DATASINK_*`` environment variables. ``meter_provider`` (the global one by
    default) receives its counts, as the SDK's own processors take one: see :data:`PROCESSOR_INSTRUMENTS`.
    """

    def __init__(
        self, location: str | os.PathLike | None = None, *, meter_provider: MeterProvider | None = None, **options: Any
    ) -> None:
        pipeline = Pipeline.resolve(location, **options)
        self.options, self._profile, self._writer = pipeline.options, pipeline.profile, pipeline.writer
        self._file_rows = min(self.options.max_queue_size, _MAX_FILE_ROWS)
        # Spans carrying none of the profile's job keys (a job's reads, queries, HTTP calls...) are never runs:
        # they are left out in the job's thread, at no copy and no queue slot. None: the profile sees every span.
        self._job_keys = pipeline.job_keys
        self.dropped_spans = 0
        """Spans dropped because the queue was full: logged and counted, never silent."""
        self.dropped_rows = 0
        """Rows dropped because the store stayed away while more than ``max_queue_size`` waited, or because
        a flush's rows could not be encoded (all of that flush's rows count, some may have been written)."""
        self.write_errors = 0
        """Writes that failed (the store was away or slow): their rows were kept for the next flush."""
        # The breakdowns the metrics report, bumped by the worker only (the job's thread bumps dropped_spans alone).
        self._mapped_spans = 0
        self._unmapped_spans: collections.Counter[str] = collections.Counter()
        """Exception type of a profile that raised -> spans dropped with it (part of ``dropped_spans``)."""
        self._dropped_rows_by_cause: collections.Counter[str] = collections.Counter()
        self._rows_written: collections.Counter[str] = collections.Counter()
        """table -> rows written."""
        self._future_dated_rows: collections.Counter[str] = collections.Counter()
        """table -> rows mapped with a time too far ahead of the clock (schema.count_future_dated)."""
        self._limits = self.options.span_limits
        self._truncation = Truncation()
        """What the span limits took from the rows."""
        self._init_worker()
        if hasattr(os, "register_at_fork"):
            after_fork = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (method := after_fork()) and method())
        track_for_exit(self)
        observe(self, PROCESSOR_INSTRUMENTS, meter_provider)

    def _after_fork(self) -> None:
        # The parent's thread and queue do not exist in the child; a processor already shut down stays so.
        if not self._shutdown:
            self._init_worker()

    def _init_worker(self) -> None:
        # Bounded by the deque itself: appending to a full one drops the oldest in one atomic step, so the
        # job's threads never pop (a pop of theirs could meet a queue the worker just emptied, and raise).
        # max_queue_size is at least 1 (Options checks it): a bound of 0 would drop every span.
        self._queue: collections.deque[tuple[ReadableSpan, dict | None]] = collections.deque(
            maxlen=self.options.max_queue_size
        )
        self._pending: Rows = {}
        self._open_spans = OpenSpans()
        """The open job spans and the spans under them: the enclosing runs of later batches' spans."""
        self._pending_since: float | None = None
        """``time.monotonic()`` when the oldest pending row was mapped; None while nothing is pending."""
        self._flush_ok = True
        self._shutdown = False
        self._shutdown_deadline = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._flushed = threading.Condition()
        self._flush_generation = 0
        self._done_generation = 0
        self._exiting = False
        """Set by the exit hook: a later ``shutdown()`` is bounded by ``exit_timeout``."""
        self._exit_deadline = math.inf
        """While the exit hook flushes: when it stops waiting (``time.monotonic()``); the bound of its writes."""
        self._unwritten_reported = False
        self._worker = threading.Thread(name="DatasinkSpanProcessor", target=self._run, daemon=True)
        self._worker.start()

    # --- the job's side: cheap, never raises ---------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # The attributes as they are now: the worker reads the span later, when the job may have added more.
        # Copying the SDK's own dict is one C call (atomic under the GIL); dict(span.attributes) walks a
        # MappingProxy over a Python-level MutableMapping, 30x slower, in the job's thread.
        attributes = sdk.span_attributes(span)
        job = self._job_keys is None or not self._job_keys.isdisjoint(attributes)
        if job:
            self._enqueue(span, attributes.copy() if attributes.__class__ is dict else dict(attributes))
        parent = span.parent
        self._open_spans.started(
            span.context.trace_id, span.context.span_id, None if parent is None else parent.span_id, job=job
        )

    def on_end(self, span: ReadableSpan) -> None:
        self._open_spans.ended(span.context.trace_id, span.context.span_id)
        if self._job_keys is not None and self._job_keys.isdisjoint(sdk.span_attributes(span)):
            return
        self._enqueue(span, None)

    def _enqueue(self, span: ReadableSpan, started_attributes: dict | None) -> None:
        if self._shutdown or not span.context.trace_flags.sampled:
            return
        queue = self._queue
        if len(queue) == queue.maxlen:  # the append below drops the oldest
            self.dropped_spans += 1
            if self.dropped_spans in (1, 10, 100) or self.dropped_spans % 1000 == 0:
                _logger.warning("queue full: %d span(s) dropped so far", self.dropped_spans)
        queue.append((span, started_attributes))
        # is_set() first: set() takes a lock every time, and a worker busy writing leaves the event set while
        # the job ends span after span.
        if len(queue) >= self.options.max_export_batch_size and not self._wake.is_set():
            self._wake.set()

    # --- the worker's side ----------------------------------------------------------------------------

    def _run(self) -> None:
        with sdk.instrumentation_suppressed():
            while not self._shutdown:
                woken = self._wake.wait(self._wait_time())
                self._wake.clear()
                if not self._shutdown:
                    # A wake-up by the timer writes what is pending; one by a full export batch only maps it.
                    self._flush_once(self._write_deadline(), due=not woken)
            # Stopped already: the exit hook gave the rows up (and counted them); no last attempt to log about.
            if not self._stop.is_set() and not self._flush_once(self._shutdown_deadline, due=True):
                self._report_unwritten("the store failed")

    def _write_deadline(self) -> float:
        """When a write begun now must end: ``timeout`` from now, ``exit_timeout`` once the process exits."""
        timeout = self.options.exit_timeout if self._exiting else self.options.timeout
        return min(time.monotonic() + timeout, self._exit_deadline)

    def _wait_time(self) -> float:
        """Seconds until the next timed flush: ``schedule_delay``, or less once rows are pending."""
        if self._pending_since is None:
            # More than 0 (Options checks it): an idle worker sleeps rather than spins.
            return self.options.schedule_delay
        return max(0.0, self._pending_since + self.options.schedule_delay - time.monotonic())

    def _flush_once(self, deadline: float, *, due: bool = False) -> bool:
        """Maps what is queued and writes what is pending when due; True when nothing is left.

        Rows are written when ``due`` (timer, shutdown), when a ``force_flush`` asked, when they have waited
        ``schedule_delay``, or when a table's pending rows reach ``max_queue_size`` (at most ``_MAX_FILE_ROWS``);
        otherwise they wait for more, so that a busy job writes fewer, larger files (a Parquet file has a fixed
        cost per column chunk)."""
        with self._flushed:
            generation = self._flush_generation
            requested = generation > self._done_generation
        failed = False
        # Only what is queued now: spans a busy job adds meanwhile wait for the next pass (their appends set
        # the wake event).
        left = len(self._queue)
        while left > 0 and self._queue:
            # max_export_batch_size is at least 1 (Options checks it): every pass lowers ``left``.
            count = min(left, len(self._queue), 4 * self.options.max_export_batch_size)
            left -= count
            batch = [self._queue.popleft() for _ in range(count)]
            try:
                rows = map_records(
                    _records(batch),
                    self._profile,
                    limits=self._limits,
                    counts=self._truncation,
                    open_spans=self._open_spans,
                )
            except Exception as error:  # noqa: BLE001 - a profile's bug must not stop the worker for every later span
                self.dropped_spans += len(batch)
                self._unmapped_spans[error_type(error)] += len(batch)
                _logger.exception("could not map %d span(s): dropped", len(batch))
                continue
            self._mapped_spans += len(batch)
            self._future_dated_rows.update(count_future_dated(rows))
            if not failed and self._would_overflow(rows):
                # Written before the bound would trim them: pending rows are only dropped when the store fails.
                failed = not self._write(deadline)
            self._add_pending(rows)
        if not failed and any(self._pending.values()):
            aged = (
                self._pending_since is not None
                and time.monotonic() - self._pending_since >= self.options.schedule_delay
            )
            full = any(len(pending) >= self._file_rows for pending in self._pending.values())
            if due or requested or aged or full:
                failed = not self._write(deadline)
        ok = not failed and not any(self._pending.values())
        with self._flushed:
            if requested:
                self._flush_ok = ok
            self._done_generation = max(self._done_generation, generation)
            self._flushed.notify_all()
        return ok

    def _would_overflow(self, rows: Rows) -> bool:
        """Whether pending rows and ``rows`` together exceed the rows of a file in some table."""
        bound = self._file_rows
        return any(
            pending and len(pending) + len(rows.get(table, ())) > bound for table, pending in self._pending.items()
        )

    def _write(self, deadline: float) -> bool:
        """Writes the pending rows; False when the store failed (they stay pending) or they were dropped."""
        try:
            self._writer.write(self._pending, deadline=deadline, stop=self._stop)
        except WriteError as error:
            self.write_errors += 1
            _logger.warning("write failed, rows kept for the next flush: %s", error)
            self._pending_since = time.monotonic()  # the next timed attempt in schedule_delay, not at once
            return False
        except Exception as error:  # noqa: BLE001 - the worker must survive anything
            # Not the store (its errors arrive as WriteError) but rows that cannot be encoded: kept, they
            # would fail every later flush too, so they are dropped and counted.
            dropped = sum(map(len, self._pending.values()))
            self._pending, self._pending_since = {}, None
            self.dropped_rows += dropped
            self._dropped_rows_by_cause[error_type(error)] += dropped
            _logger.exception("could not encode rows: dropped %d row(s)", dropped)
            return False
        for table, rows in self._pending.items():
            self._rows_written[table] += len(rows)
        self._pending, self._pending_since = {}, None
        return True

    def _add_pending(self, rows: Rows) -> None:
        for table, table_rows in rows.items():
            if not table_rows:
                continue
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            pending = self._pending.setdefault(table, [])
            pending.extend(table_rows)
            excess = len(pending) - self.options.max_queue_size
            if excess > 0:
                del pending[:excess]
                self.dropped_rows += excess
                self._dropped_rows_by_cause[QUEUE_FULL] += excess
                _logger.warning("store unavailable: dropped %d oldest %s row(s)", excess, table)

    # --- SpanProcessor's flush and shutdown ---------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Writes everything queued; False if that did not succeed within ``timeout_millis``."""
        if self._shutdown:
            return False
        return self._wait_flushed(self._request_flush(), time.monotonic() + timeout_millis / 1000)

    def _request_flush(self) -> int:
        """Asks the worker to write everything queued now; returns the generation to wait for."""
        with self._flushed:
            self._flush_generation += 1
            target = self._flush_generation
        self._wake.set()
        return target

    def _wait_flushed(self, target: int, end: float) -> bool:
        """Whether the flush of generation ``target`` wrote everything, waiting until ``end`` at most."""
        with self._flushed:
            while self._done_generation < target:
                remaining = end - time.monotonic()
                if remaining <= 0 or not self._flushed.wait(remaining):
                    return False
            return self._flush_ok

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Writes what is left and stops the worker, waiting at most ``timeout_millis``.

        The default wait is the ``timeout`` option, or ``exit_timeout`` once the process is exiting.
        """
        if self._shutdown:
            return
        if timeout_millis is not None:
            timeout = timeout_millis / 1000
        else:
            timeout = self.options.exit_timeout if self._exiting else self.options.timeout
        self._shutdown_deadline = time.monotonic() + timeout
        self._shutdown = True
        self._wake.set()
        self._worker.join(timeout)
        # Cuts a retry backoff, and a request in flight, short.
        self._stop.set()
        if self._worker.is_alive():
            self._report_unwritten(f"gave up waiting for the store after {timeout:.1f}s")

    def _report_unwritten(self, reason: str) -> None:
        """Logs, once, how many rows (and spans not yet mapped) are given up on."""
        if self._unwritten_reported:
            return
        self._unwritten_reported = True
        rows = sum(map(len, list(self._pending.values())))
        spans = len(self._queue)
        unmapped = f" and {spans} span(s) not mapped" if spans else ""
        _logger.warning("shutdown: %d row(s) not written%s (%s)", rows, unmapped, reason)

    # --- process exit (see track_for_exit) -------------------------------------------------------------

    def _begin_exit(self) -> tuple[int, float] | None:
        """Asks the worker to write everything now, every write bounded by ``exit_timeout``."""
        self._exiting = True
        if self._shutdown:
            return None
        self._exit_deadline = time.monotonic() + self.options.exit_timeout
        return self._request_flush(), self._exit_deadline

    def _end_exit(self, started: tuple[int, float] | None) -> None:
        """Waits for the flush :meth:`_begin_exit` asked for; past its bound, gives the rows up (logged once)."""
        if started is None:
            return
        target, deadline = started
        if self._wait_flushed(target, deadline):
            self._exit_deadline = math.inf  # spans still ending (other threads) get exit_timeout per write
            return
        in_time = time.monotonic() < deadline
        self._shutdown = True
        self._stop.set()  # cuts a request in flight: the worker stops instead of retrying after we are gone
        self._wake.set()
        bound = f"within {self.options.exit_timeout:.1f}s"
        self._report_unwritten(f"process exit: the store {'failed' if in_time else 'did not take them ' + bound}")


def _records(batch: list[tuple[ReadableSpan, dict | None]]) -> list[SpanRecord]:
    records = []
    for span, started_attributes in batch:
        try:
            records.append(sdk.from_readable_span(span, started_attributes=started_attributes))
        except Exception:  # noqa: BLE001 - a span mutated while we read it; its end row still comes
            _logger.debug("could not read span %r", getattr(span, "name", span), exc_info=True)
    return records


def _processed_spans(processor: DatasinkSpanProcessor) -> Reading:
    # dropped_spans is the one count the job's threads bump; the worker's breakdown of its own drops is subtracted.
    unmapped = processor._unmapped_spans.copy()
    queue_full = processor.dropped_spans - sum(unmapped.values())
    return [(processor._mapped_spans, {}), *error_counts({QUEUE_FULL: queue_full, **unmapped})]


PROCESSOR_INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument(
        "otel.sdk.processor.span.processed",
        "counter",
        "{span}",
        "Span starts and ends the processor has mapped to rows (no error.type) or dropped (error.type: queue_full, "
        "or the exception type of a profile that raised).",
        _processed_spans,
    ),
    Instrument(
        "otel.sdk.processor.span.queue.size",
        "up_down_counter",
        "{span}",
        "Span starts and ends queued for the worker.",
        lambda processor: [(len(processor._queue), {})],
    ),
    Instrument(
        "otel.sdk.processor.span.queue.capacity",
        "up_down_counter",
        "{span}",
        "Span starts and ends the queue holds at most (max_queue_size).",
        lambda processor: [(processor._queue.maxlen or 0, {})],
    ),
    Instrument(
        "otel_datasink.processor.rows_written",
        "counter",
        "{row}",
        "Rows written to the store, per table.",
        lambda processor: per_table(processor._rows_written.copy()),
    ),
    Instrument(
        "otel_datasink.processor.future_dated_rows",
        "counter",
        "{row}",
        FUTURE_DATED_ROWS,
        lambda processor: per_table(processor._future_dated_rows.copy()),
    ),
    Instrument(
        "otel_datasink.processor.rows_dropped",
        "counter",
        "{row}",
        "Rows dropped: past max_queue_size while the store was away (error.type: queue_full), or because they "
        "could not be encoded (the exception's type).",
        lambda processor: error_counts(processor._dropped_rows_by_cause.copy()),
    ),
    Instrument(
        "otel_datasink.processor.write_errors",
        "counter",
        "{write}",
        "Writes that failed (the store was away or slow): their rows were kept and retried.",
        lambda processor: [(processor.write_errors, {})],
    ),
    *truncation_instruments("processor", lambda processor: processor._truncation),
)
"""What a :class:`DatasinkSpanProcessor` reports: a "span" here is a span's start or its end, as in
``dropped_spans`` (each is queued, and may be dropped, on its own)."""
