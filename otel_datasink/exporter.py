"""``DatasinkSpanExporter``: a standard SpanExporter for users who already run a BatchSpanProcessor.

An exporter only sees spans when they end, so it writes terminal rows (SUCCESS/FAILED) only, never
STARTED rows; use :class:`~otel_datasink.processor.DatasinkSpanProcessor` for those. Registered as
``datasink`` in ``opentelemetry_traces_exporter``: ``OTEL_TRACES_EXPORTER=datasink`` selects it, and with no
arguments it reads its options from ``OTEL_EXPORTER_DATASINK_*``.

A job that exits without shutting its provider down still has its rows written: at exit the global
TracerProvider is flushed while S3 can still be written (see :mod:`otel_datasink.at_exit`).

Its exports are counted as the conventions' ``otel.sdk.exporter.span.exported`` (see :data:`EXPORTER_INSTRUMENTS`).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_datasink.at_exit import track_for_exit
from otel_datasink.mapping import Truncation, map_records
from otel_datasink.pipeline import Pipeline
from otel_datasink.schema import count_future_dated
from otel_datasink.sdk import from_readable_span
from otel_datasink.selfmetrics import (
    FUTURE_DATED_ROWS,
    Instrument,
    Reading,
    error_type,
    observe,
    per_table,
    truncation_instruments,
)

_SHUT_DOWN = "already_shutdown"
"""``error.type`` of spans exported after ``shutdown`` (the value the SDK's own processors use)."""

_logger = logging.getLogger(__name__)


class DatasinkSpanExporter(SpanExporter):
    """Writes the job spans of each exported batch as Parquet rows at ``location``.

    ``meter_provider`` (the global one by default) receives its counts: see :data:`EXPORTER_INSTRUMENTS`.
    """

    def __init__(
        self, location: str | os.PathLike | None = None, *, meter_provider: MeterProvider | None = None, **options: Any
    ) -> None:
        pipeline = Pipeline.resolve(location, **options)
        self.options, self._profile, self._writer = pipeline.options, pipeline.profile, pipeline.writer
        self._stop = threading.Event()
        self._exiting = False
        """Set by the exit hook: every export from then on is bounded by ``exit_timeout``."""
        self._exit_deadline = math.inf
        """While the exit hook flushes: when it stops waiting (``time.monotonic()``); the bound of its exports."""
        self._lost_at_exit = 0
        """Spans the exit hook's flush could not write: counted, and logged once when it ends."""
        self._exported: collections.Counter[str] = collections.Counter()
        """``error.type`` ("" for none) -> spans whose export ended so: one bump per export, in the caller's thread
        (a BatchSpanProcessor's worker, not the job's)."""
        self._future_dated_rows: collections.Counter[str] = collections.Counter()
        """table -> rows mapped with a time too far ahead of the clock (schema.count_future_dated)."""
        self._limits = self.options.span_limits
        self._truncation = Truncation()
        """What the span limits took from the rows."""
        track_for_exit(self, exporter=True)
        observe(self, EXPORTER_INSTRUMENTS, meter_provider)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Maps and writes one batch; never raises: a failure is logged and reported as FAILURE."""
        flushing_at_exit = self._exit_deadline != math.inf
        if self._stop.is_set():
            if flushing_at_exit:
                self._lost_at_exit += len(spans)
            self._exported[_SHUT_DOWN] += len(spans)
            return SpanExportResult.FAILURE
        try:
            records = (from_readable_span(span) for span in spans)
            rows = map_records(records, self._profile, limits=self._limits, counts=self._truncation)
            self._future_dated_rows.update(count_future_dated(rows))
            if any(rows.values()):
                timeout = self.options.exit_timeout if self._exiting else self.options.timeout
                deadline = min(time.monotonic() + timeout, self._exit_deadline)
                self._writer.write(rows, deadline=deadline, stop=self._stop)
            self._exported[""] += len(spans)
            return SpanExportResult.SUCCESS
        except Exception as error:  # noqa: BLE001 - an exporter never raises into the job
            self._exported[error_type(error)] += len(spans)
            if flushing_at_exit:
                self._lost_at_exit += len(spans)  # logged once, by _end_exit
                _logger.debug("could not export %d span(s) at exit: %s", len(spans), error)
            else:
                _logger.warning("could not export %d span(s): %s", len(spans), error)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Cuts any retry in progress short; later exports fail fast."""
        self._stop.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here: every export is written before it returns."""
        return True

    def _begin_exit(self) -> float:
        """Bounds the exports of the exit hook's flush, and every later one, by ``exit_timeout``; returns the
        time the hook stops waiting."""
        self._exiting = True
        self._exit_deadline = time.monotonic() + self.options.exit_timeout
        return self._exit_deadline

    def _give_up(self) -> None:
        """Stops writing: the export in flight is cut short and fails, like every later one."""
        self._stop.set()

    def _end_exit(self, flushed: bool) -> None:
        """Past the exit flush: logs, once, the spans it could not write (later failures log as usual)."""
        self._exit_deadline = math.inf
        lost = self._lost_at_exit
        bound = f"within {self.options.exit_timeout:.1f}s"
        if lost:
            reason = "the store failed" if flushed else f"the store did not take them {bound}"
            _logger.warning("process exit: %d span(s) not written (%s)", lost, reason)
        elif not flushed:
            # Nothing of ours failed: the spans still wait in a span processor that did not flush in time.
            _logger.warning("process exit: spans still queued for the exporter are not written (no flush %s)", bound)


class ZeroCodeSpanExporter(SpanExporter):
    """What ``OTEL_TRACES_EXPORTER=datasink`` makes (entry point ``datasink`` of ``opentelemetry_traces_exporter``):
    a :class:`DatasinkSpanExporter` configured by the ``OTEL_EXPORTER_DATASINK_*`` variables.

    When they cannot make one (an unknown profile, a mapping file with a mistake, a file as the location), the SDK
    gets one logged line and this exporter, which writes nothing: the job and the rest of its telemetry run as if
    ``datasink`` had not been named. Raised to the SDK, the error made it give up its whole configuration (no
    tracer provider, no other exporter) and print two tracebacks of 30 lines.
    """

    def __new__(cls, **options: Any) -> Any:
        """A :class:`DatasinkSpanExporter`, or, when it cannot be made, an instance of this class."""
        options.setdefault("meter_provider", _meter_provider_of_sdk_components())
        try:
            return DatasinkSpanExporter(**options)
        except Exception as error:  # noqa: BLE001 - whatever it is, the SDK would drop every exporter with ours
            _logger.error("OTEL_TRACES_EXPORTER=datasink: no span is written: %s", error)
            return super().__new__(cls)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Writes nothing: the exporter could not be configured (said once, when the SDK made it)."""
        return SpanExportResult.FAILURE


SDK_INTERNAL_METRICS = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"
"""The SDK's switch for the metrics of its own processors and exporters (``true``; off by default)."""


def _meter_provider_of_sdk_components() -> MeterProvider | None:
    """The global MeterProvider (None) when :data:`SDK_INTERNAL_METRICS` is on, else a no-op one: the zero-code
    exporter reports as the SDK's own components beside it do. Reporting alone, it made the distro's default
    metrics exporter send to an OTLP collector at localhost:4317 at exit, 8 s of retries when there is none."""
    if os.environ.get(SDK_INTERNAL_METRICS, "").strip().lower() == "true":
        return None
    return NoOpMeterProvider()


def _exported_spans(exporter: DatasinkSpanExporter) -> Reading:
    return [(count, {"error.type": error} if error else {}) for error, count in exporter._exported.copy().items()]


EXPORTER_INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument(
        "otel.sdk.exporter.span.exported",
        "counter",
        "{span}",
        "Spans whose export has ended: written (or not a job's: nothing to write; no error.type), or failed "
        "(error.type: the exception's type, or already_shutdown).",
        _exported_spans,
    ),
    Instrument(
        "otel_datasink.exporter.future_dated_rows",
        "counter",
        "{row}",
        FUTURE_DATED_ROWS,
        lambda exporter: per_table(exporter._future_dated_rows.copy()),
    ),
    *truncation_instruments("exporter", lambda exporter: exporter._truncation),
)
"""What a :class:`DatasinkSpanExporter` reports."""
