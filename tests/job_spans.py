"""Job spans with chosen times, written to a location by the real pipeline (mapping, then writer)."""

from __future__ import annotations

import itertools
import time
from typing import Any

from otel_datasink import semconv
from otel_datasink.config import Options
from otel_datasink.mapping import STATUS_CODE_ERROR, STATUS_CODE_UNSET, SpanRecord, map_records
from otel_datasink.profiles import DEFAULT_PROFILE, Profile
from otel_datasink.writer import Writer

MINUTE_NS = 60 * 1_000_000_000
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS

_ids = itertools.count(1)


def now_ns() -> int:
    """Now, in epoch nanoseconds: the times of the scenarios are chosen relative to it."""
    return time.time_ns()


def job_span(
    job: str,
    start_ns: int,
    end_ns: int | None,
    *,
    failed: bool = False,
    records: int | None = None,
    dataset: str | None = None,
    updates: list[dict[str, Any]] | None = None,
    run_id: str | None = None,
    run_type: str | None = None,
    logical_date: str | None = None,
    error: str = "RuntimeError",
    span_id: int | None = None,
    checks: list[dict[str, Any]] | None = None,
) -> SpanRecord:
    """A job span as the pipeline sees it; ``end_ns=None`` is its start (a STARTED row).

    ``updates``: ``dataset.update`` events, dicts of the event's attributes without the ``dataset.`` prefix
    plus ``at_ns`` (default: the span's end). ``checks``: ``dataset.check`` events, dicts of the event's ``check.``
    attributes without the prefix, plus ``dataset`` (its ``dataset.name``) and ``at_ns``.
    """
    attributes: dict[str, Any] = {semconv.JOB_NAME: job}
    for key, value in (
        (semconv.JOB_RECORDS_PROCESSED, records),
        (semconv.DATASET_NAME, dataset),
        (semconv.JOB_RUN_ID, run_id),
        (semconv.JOB_RUN_TYPE, run_type),
        (semconv.JOB_RUN_LOGICAL_DATE, logical_date),
    ):
        if value is not None:
            attributes[key] = value
    events = []
    if end_ns is not None:
        for update in updates or ():
            update = dict(update)
            at_ns = update.pop("at_ns", end_ns)
            events.append((semconv.DATASET_UPDATE_EVENT, at_ns, {f"dataset.{k}": v for k, v in update.items()}))
        for check in checks or ():
            check = dict(check)
            at_ns = check.pop("at_ns", end_ns)
            attributes_of_check = {f"check.{k}": v for k, v in check.items() if k != "dataset"}
            if "dataset" in check:
                attributes_of_check[semconv.DATASET_NAME] = check["dataset"]
            events.append((semconv.DATASET_CHECK_EVENT, at_ns, attributes_of_check))
        if failed:
            events.append(
                (
                    semconv.EXCEPTION_EVENT,
                    end_ns,
                    {"exception.type": error, "exception.message": f"{job} broke", "exception.escaped": True},
                )
            )
    return SpanRecord(
        name=job,
        trace_id=next(_ids),
        span_id=span_id if span_id is not None else next(_ids),
        parent_span_id=None,
        start_time_ns=start_ns,
        end_time_ns=end_ns,
        status_code=STATUS_CODE_ERROR if failed else STATUS_CODE_UNSET,
        status_message="",
        attributes=attributes,
        events=events,
        resource={"service.name": "tests"},
    )


def started(span: SpanRecord) -> SpanRecord:
    """The start of an ended span: the record the processor maps when the span starts."""
    return SpanRecord(
        name=span.name,
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        start_time_ns=span.start_time_ns,
        end_time_ns=None,
        status_code=STATUS_CODE_UNSET,
        status_message="",
        attributes=span.attributes,
        resource=span.resource,
    )


def write_spans(location: str, spans: list[SpanRecord], profile: Profile = DEFAULT_PROFILE, **options: Any) -> None:
    """Maps the spans with ``profile`` and writes their rows, as one flush of the processor or collector does."""
    Writer(Options.resolve(location, **options)).write(map_records(spans, profile))
