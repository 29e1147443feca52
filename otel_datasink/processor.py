"""``DatasinkSpanProcessor``: STARTED rows when job spans start, terminal rows when they end.

The job's threads only append the span to a bounded deque (as the SDK's BatchSpanProcessor does); a
background worker maps and writes. A slow or dead store never blocks the job: rows wait in memory and are
retried on the next flush, and only past ``max_queue_size`` are the oldest dropped, logged and counted.

The worker maps each wake-up's spans at once but writes when rows have waited ``schedule_delay``, when a
table has ``max_queue_size`` rows (at most 8192), or on ``force_flush``/``shutdown``: a busy job then writes
files of thousands of rows rather than one small file per export batch (benchmarks/README.md).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, Context, attach, detach, set_value
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_datasink.config import Options
from otel_datasink.mapping import Rows, SpanRecord, from_readable_span, map_records
from otel_datasink.profiles import job_keys_of, load_profile
from otel_datasink.writer import WriteError, Writer

_logger = logging.getLogger(__name__)

_MAX_FILE_ROWS = 8192
"""Most rows a busy job's pending rows gather before they are written, whatever ``max_queue_size``: past a few
thousand rows a file costs little less per row, and a larger one holds the GIL longer at once."""


class DatasinkSpanProcessor(SpanProcessor):
    """Writes job spans to ``job_runs`` / ``dataset_status`` at ``location`` from a background thread.

    ``location`` and ``options`` are those of :class:`otel_datasink.config.Options`; anything not given
    comes from the ``OTEL_EXPORTER_DATASINK_*`` environment variables.
    """

    def __init__(self, location: str | os.PathLike | None = None, **options: Any) -> None:
        self.options = Options.resolve(location, **options)
        self._profile = load_profile(self.options.profile)
        self._writer = Writer(self.options)
        self._file_rows = min(self.options.max_queue_size, _MAX_FILE_ROWS)
        # The default profile takes exactly the spans with a job.name (mapping.is_job_span): the others (a
        # job's reads, queries, HTTP calls...) are left out in the job's thread, before they cost a queue
        # slot and the worker's time. Other profiles decide on more than one key: they see every span.
        # Spans carrying none of the profile's job keys are never runs: they cost the job no copy and no queue slot.
        self._job_keys = job_keys_of(self._profile)
        self.dropped_spans = 0
        """Spans dropped because the queue was full: logged and counted, never silent."""
        self.dropped_rows = 0
        """Rows dropped because the store stayed away while more than ``max_queue_size`` waited, or because
        a flush's rows could not be encoded (all of that flush's rows count, some may have been written)."""
        self._init_worker()
        if hasattr(os, "register_at_fork"):
            after_fork = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (method := after_fork()) and method())

    def _after_fork(self) -> None:
        # The parent's thread and queue do not exist in the child; a processor already shut down stays so.
        if not self._shutdown:
            self._init_worker()

    def _init_worker(self) -> None:
        # Bounded by the deque itself: appending to a full one drops the oldest in one atomic step, so the
        # job's threads never pop (a pop of theirs could meet a queue the worker just emptied, and raise).
        self._queue: collections.deque[tuple[ReadableSpan, dict | None]] = collections.deque(
            maxlen=self.options.max_queue_size
        )
        self._pending: Rows = {}
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
        self._pid = os.getpid()
        self._worker = threading.Thread(name="DatasinkSpanProcessor", target=self._run, daemon=True)
        self._worker.start()

    # --- the job's side: cheap, never raises ---------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # The attributes as they are now: the worker reads the span later, when the job may have added more.
        # Copying the SDK's own dict is one C call (atomic under the GIL); dict(span.attributes) walks a
        # MappingProxy over a Python-level MutableMapping, 30x slower, in the job's thread.
        attributes = getattr(getattr(span, "_attributes", None), "_dict", None)  # private: fall back if renamed
        if attributes.__class__ is not dict:
            attributes = span.attributes or {}
        if self._job_keys is None or not self._job_keys.isdisjoint(attributes):
            self._enqueue(span, dict(attributes) if attributes.__class__ is not dict else attributes.copy())

    def on_end(self, span: ReadableSpan) -> None:
        if self._job_keys is not None:
            attributes = getattr(getattr(span, "_attributes", None), "_dict", None)
            if attributes.__class__ is not dict:
                attributes = span.attributes or {}
            if self._job_keys.isdisjoint(attributes):
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
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            while not self._shutdown:
                woken = self._wake.wait(self._wait_time())
                self._wake.clear()
                if not self._shutdown:
                    # A wake-up by the timer writes what is pending; one by a full export batch only maps it.
                    self._flush_once(time.monotonic() + self.options.timeout, due=not woken)
            if not self._flush_once(self._shutdown_deadline, due=True):
                _logger.warning("shutdown: %d row(s) not written", sum(map(len, self._pending.values())))
        finally:
            detach(token)

    def _wait_time(self) -> float:
        """Seconds until the next timed flush: ``schedule_delay``, or less once rows are pending."""
        if self._pending_since is None:
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
            count = min(left, len(self._queue), 4 * self.options.max_export_batch_size)
            left -= count
            batch = [self._queue.popleft() for _ in range(count)]
            try:
                rows = map_records(_records(batch), self._profile)
            except Exception:  # noqa: BLE001 - a profile's bug must not stop the worker for every later span
                self.dropped_spans += len(batch)
                _logger.exception("could not map %d span(s): dropped", len(batch))
                continue
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
            _logger.warning("write failed, rows kept for the next flush: %s", error)
            self._pending_since = time.monotonic()  # the next timed attempt in schedule_delay, not at once
            return False
        except Exception:  # noqa: BLE001 - the worker must survive anything
            # Not the store (its errors arrive as WriteError) but rows that cannot be encoded: kept, they
            # would fail every later flush too, so they are dropped and counted.
            dropped = sum(map(len, self._pending.values()))
            self._pending, self._pending_since = {}, None
            self.dropped_rows += dropped
            _logger.exception("could not encode rows: dropped %d row(s)", dropped)
            return False
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
                _logger.warning("store unavailable: dropped %d oldest %s row(s)", excess, table)

    # --- SpanProcessor's flush and shutdown ---------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Writes everything queued; False if that did not succeed within ``timeout_millis``."""
        if self._shutdown:
            return False
        with self._flushed:
            self._flush_generation += 1
            target = self._flush_generation
        self._wake.set()
        end = time.monotonic() + timeout_millis / 1000
        with self._flushed:
            while self._done_generation < target:
                remaining = end - time.monotonic()
                if remaining <= 0 or not self._flushed.wait(remaining):
                    return False
            return self._flush_ok

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Writes what is left and stops the worker, waiting at most ``timeout_millis``.

        The default wait is the ``timeout`` option.
        """
        if self._shutdown:
            return
        timeout = self.options.timeout if timeout_millis is None else timeout_millis / 1000
        self._shutdown_deadline = time.monotonic() + timeout
        self._shutdown = True
        self._wake.set()
        self._worker.join(timeout)
        # Cuts a retry backoff short; a request already on the wire ends with its socket timeout, in the
        # daemon worker, after we have returned.
        self._stop.set()
        if self._worker.is_alive():
            _logger.warning("shutdown: gave up waiting for the store after %.1fs", timeout)


def _records(batch: list[tuple[ReadableSpan, dict | None]]) -> list[SpanRecord]:
    records = []
    for span, started_attributes in batch:
        try:
            records.append(from_readable_span(span, started_attributes=started_attributes))
        except Exception:  # noqa: BLE001 - a span mutated while we read it; its end row still comes
            _logger.debug("could not read span %r", getattr(span, "name", span), exc_info=True)
    return records
