"""``DatasinkSpanExporter``: a standard SpanExporter for users who already run a BatchSpanProcessor.

An exporter only sees spans when they end, so it writes terminal rows (SUCCESS/FAILED) only, never
STARTED rows; use :class:`~otel_datasink.processor.DatasinkSpanProcessor` for those. Registered as
``datasink`` in ``opentelemetry_traces_exporter``: ``OTEL_TRACES_EXPORTER=datasink`` selects it, and with no
arguments it reads its options from ``OTEL_EXPORTER_DATASINK_*``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_datasink.config import Options
from otel_datasink.mapping import from_readable_span, map_records
from otel_datasink.profiles import load_profile
from otel_datasink.writer import Writer

_logger = logging.getLogger(__name__)


class DatasinkSpanExporter(SpanExporter):
    """Writes the job spans of each exported batch as Parquet rows at ``location``."""

    def __init__(self, location: str | os.PathLike | None = None, **options: Any) -> None:
        self.options = Options.resolve(location, **options)
        self._profile = load_profile(self.options.profile)
        self._writer = Writer(self.options)
        self._stop = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Maps and writes one batch; never raises: a failure is logged and reported as FAILURE."""
        if self._stop.is_set():
            return SpanExportResult.FAILURE
        try:
            rows = map_records((from_readable_span(span) for span in spans), self._profile)
            if any(rows.values()):
                self._writer.write(rows, deadline=time.monotonic() + self.options.timeout, stop=self._stop)
            return SpanExportResult.SUCCESS
        except Exception as error:  # noqa: BLE001 - an exporter never raises into the job
            _logger.warning("could not export %d span(s): %s", len(spans), error)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Cuts any retry in progress short; later exports fail fast."""
        self._stop.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here: every export is written before it returns."""
        return True
