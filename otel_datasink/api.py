"""The one-line setup, :func:`configure`, and :func:`job_run`, a thin context manager over a standard span."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util.types import AttributeValue

from otel_datasink import semconv
from otel_datasink.config import Options
from otel_datasink.processor import DatasinkSpanProcessor

_logger = logging.getLogger(__name__)


def configure(location: str | os.PathLike | None = None, **options: Any) -> DatasinkSpanProcessor:
    """Adds a :class:`DatasinkSpanProcessor` to the global TracerProvider, creating one if none is set.

    Returns the processor, whose ``force_flush``/``shutdown`` the provider also calls. Called again for the
    same provider and location, it returns the first processor instead of adding a second. A job need not call
    ``shutdown()``: the rows it still holds are written when the process exits (within ``exit_timeout``).
    """
    provider = trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        # set_tracer_provider refuses a second provider with a warning; use whichever won.
        provider = trace.get_tracer_provider()
        if not hasattr(provider, "add_span_processor"):
            raise RuntimeError(f"the global tracer provider {provider!r} does not take span processors")
    key = (id(provider), Options.resolve(location, **options).location)
    configured = _CONFIGURED.get(key)
    if configured is not None:
        # A second call (a re-imported module, a notebook cell run twice) must not write every row twice.
        _logger.warning("otel-datasink is already configured for %s; keeping the first processor", key[1])
        return configured
    processor = DatasinkSpanProcessor(location, **options)
    provider.add_span_processor(processor)
    _CONFIGURED[key] = processor
    return processor


_CONFIGURED: dict[tuple[int, str], DatasinkSpanProcessor] = {}


class JobRun:
    """The handle :func:`job_run` yields: the span, a records counter, dataset updates and checks."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.records_processed = 0
        self._counted = False

    def add_records(self, count: int) -> None:
        """Counts records processed; the total lands in ``job.records_processed`` when the run ends."""
        self.records_processed += count
        self._counted = True

    def dataset_updated(
        self,
        name: str,
        *,
        records_written: int | None = None,
        record_count: int | None = None,
        watermark: str | int | None = None,
        freshness_sla_minutes: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Records a ``dataset.update`` event at ``timestamp`` (epoch ns; default now): one row of
        ``dataset_status`` if the run succeeds or fails."""
        attributes = _given(
            {semconv.DATASET_NAME: name},
            (semconv.DATASET_RECORDS_WRITTEN, records_written),
            (semconv.DATASET_RECORD_COUNT, record_count),
            (semconv.DATASET_WATERMARK, watermark),
            (semconv.DATASET_FRESHNESS_SLA_MINUTES, freshness_sla_minutes),
        )
        self.span.add_event(semconv.DATASET_UPDATE_EVENT, attributes, timestamp=timestamp)

    def dataset_checked(
        self,
        name: str,
        check: str,
        passed: bool,
        *,
        assertion: str | None = None,
        column: str | None = None,
        actual: AttributeValue | None = None,
        expected: AttributeValue | None = None,
        severity: str | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Records a ``dataset.check`` event at ``timestamp`` (epoch ns; default now): the result of the check
        ``check`` of dataset ``name``, one row of ``dataset_checks`` when the run ends (whether it succeeds or
        fails)."""
        attributes = _given(
            {semconv.DATASET_NAME: name, semconv.CHECK_NAME: check, semconv.CHECK_PASSED: passed},
            (semconv.CHECK_ASSERTION, assertion),
            (semconv.CHECK_COLUMN, column),
            (semconv.CHECK_ACTUAL, actual),
            (semconv.CHECK_EXPECTED, expected),
            (semconv.CHECK_SEVERITY, severity),
        )
        self.span.add_event(semconv.DATASET_CHECK_EVENT, attributes, timestamp=timestamp)


@contextlib.contextmanager
def job_run(
    name: str,
    job_type: str = "batch",
    dataset: str | None = None,
    *,
    run_id: str | None = None,
    attempt: int | None = None,
    logical_date: str | int | None = None,
    run_type: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    tracer: trace.Tracer | None = None,
) -> Iterator[JobRun]:
    """Runs the body inside a job span named ``name``; an exception escaping it marks the run FAILED.

    >>> with job_run("ingest_orders", dataset="orders") as run:
    ...     run.add_records(len(batch))
    """
    span_attributes = _given(
        {semconv.JOB_NAME: name, semconv.JOB_TYPE: job_type},
        (semconv.DATASET_NAME, dataset),
        (semconv.JOB_RUN_ID, run_id),
        (semconv.JOB_RUN_ATTEMPT, attempt),
        (semconv.JOB_RUN_LOGICAL_DATE, logical_date),
        (semconv.JOB_RUN_TYPE, run_type),
    )
    span_attributes.update(attributes or {})
    tracer = tracer or trace.get_tracer("otel_datasink")
    with tracer.start_as_current_span(name, attributes=span_attributes) as span:
        run = JobRun(span)
        try:
            yield run
        finally:
            # Only a run that counted: otherwise a job.records_processed the job set itself would become 0.
            if run._counted:
                span.set_attribute(semconv.JOB_RECORDS_PROCESSED, run.records_processed)


def _given(
    attributes: dict[str, AttributeValue], *optional: tuple[str, AttributeValue | None]
) -> dict[str, AttributeValue]:
    """``attributes`` with each optional (key, value) whose value was given: a span attribute is never None."""
    attributes.update((key, value) for key, value in optional if value is not None)
    return attributes
