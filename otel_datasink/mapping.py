"""Pure functions from a span to table rows: the one mapping every front door uses.

A span arrives as a :class:`SpanRecord` (built from an SDK ``ReadableSpan`` by :mod:`otel_datasink.sdk`, from OTLP
by :mod:`otel_datasink.otlp`, from an OpenLineage event by :mod:`otel_datasink.openlineage`), a mapping profile may
rewrite it into the contract's conventions, and :func:`job_run_row` / :func:`dataset_rows` / :func:`check_rows` turn
it into rows of ``job_runs``, ``dataset_status`` and ``dataset_checks``. Nothing here knows the OpenTelemetry SDK.
Nothing here raises on bad attribute values: they are coerced where meaningful and otherwise kept,
as strings, in the ``attributes`` column.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from otel_datasink import semconv
from otel_datasink.config import MAX_STRING, SpanLimits, flag
from otel_datasink.schema import (
    CHECK_FAILED,
    CHECK_PASSED,
    DATASET_CHECKS_TABLE,
    DATASET_STATUS_TABLE,
    JOB_RUNS_TABLE,
    STATUS_FAILED,
    STATUS_STARTED,
    STATUS_SUCCESS,
    Rows,
)

# OTLP's and the SDK's StatusCode share these numbers.
STATUS_CODE_UNSET = 0
STATUS_CODE_OK = 1
STATUS_CODE_ERROR = 2

_MIN_INT64 = -(2**63)
_MAX_INT64 = 2**63 - 1

Event = tuple[str, int, Mapping[str, Any]]
"""A span event: (name, time in epoch ns, attributes)."""


@dataclasses.dataclass(slots=True)
class SpanRecord:
    """The parts of a span the mapping reads, whichever way the span arrived."""

    name: str
    trace_id: int
    span_id: int
    parent_span_id: int | None
    start_time_ns: int | None
    """None only for a run whose end is known but not its start (an OpenLineage COMPLETE event): its row's
    start_time and duration_ms are then NULL, and the views take the start from the run's STARTED row."""
    end_time_ns: int | None
    status_code: int
    status_message: str
    attributes: Mapping[str, Any]
    events: Sequence[Event] = ()
    resource: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dropped_attributes: int = 0
    """Attributes of the span already dropped by the span limits (the OTLP decoding applies them as it reads);
    :func:`limited` adds those it drops."""
    dropped_events: int = 0
    """Events already dropped by the span limits, as :attr:`dropped_attributes`."""
    checks_only: bool = False
    """A record that is no run but carries checks of datasets (a dbt test node, from :mod:`otel_datasink.openlineage`):
    its ``dataset.check`` events become ``dataset_checks`` rows of the run it names, and it makes no ``job_runs``
    or ``dataset_status`` row."""


MappedSpan = SpanRecord | Sequence[SpanRecord] | None
"""What a profile makes of a span: None for a span that is no job run, else the span in the contract's conventions:
one record, or several when the span reports several runs (a retried Prefect task's span: one record per try, all
of that span, see :mod:`otel_datasink.profiles.prefect`)."""


def records_of(mapped: MappedSpan) -> Sequence[SpanRecord]:
    """The records of what a profile made of a span (:data:`MappedSpan`): none, one, or each of several."""
    if mapped is None:
        return ()
    return (mapped,) if isinstance(mapped, SpanRecord) else mapped


def spans_of(runs: Sequence[Mapping[str, Any]]) -> int:
    """The spans that made ``runs`` (``job_runs`` rows of :func:`map_records`): a span's several runs are
    consecutive rows of its trace and span id, so a counter of job spans counts them once."""
    spans, previous = 0, None
    for run in runs:
        key = (run["trace_id"], run["span_id"])
        if key != previous:
            spans, previous = spans + 1, key
    return spans


DEFAULT_LIMITS = SpanLimits()


@dataclasses.dataclass
class Truncation:
    """What the span limits took from the rows of a front door (:func:`map_records` adds to it): its metrics."""

    dropped_attributes: int = 0
    dropped_events: int = 0
    truncated_values: int = 0

    def add(self, other: Truncation) -> None:
        """Adds the counts of ``other``."""
        self.dropped_attributes += other.dropped_attributes
        self.dropped_events += other.dropped_events
        self.truncated_values += other.truncated_values


# --- coercion: never raises, returns None when a value has no meaningful reading ---------------------


def clean_str(value: Any) -> str | None:
    """A value as a string fit for a column: sequences, maps and booleans as JSON, control characters dropped,
    length capped."""
    if value.__class__ is str and len(value) <= MAX_STRING and value.isprintable():
        return value  # the common case, decided without further calls
    text = _printable(value)
    return text[:MAX_STRING] if text is not None and len(text) > MAX_STRING else text


def _printable(value: Any) -> str | None:
    """:func:`clean_str` before its length cap."""
    if value is None:
        return None
    if not isinstance(value, str):
        # JSON for structured values and booleans: "true", as OTLP JSON and every SQL engine spell it.
        if isinstance(value, (list, tuple)):
            value = json.dumps(list(value), default=_json_default)
        elif isinstance(value, (bool, dict)):
            value = json.dumps(value, default=_json_default)
        elif isinstance(value, bytes):
            value = value.hex()
        else:
            value = str(value)
    if not value.isprintable():
        value = "".join(c for c in value if c.isprintable() or c == " ")
    return value


_KEPT_IN_TEXT = frozenset("\n\t")
"""Control characters a message keeps: its line breaks and indentation (a traceback, a multi-line error)."""


def clean_text(value: Any) -> str | None:
    """A free-text value (an error message) fit for a column: as :func:`clean_str`, but its line breaks and tabs
    stay.

    NUL and the other control characters (``\\r`` too: ``\\r\\n`` becomes ``\\n``) are dropped, and so are lone
    surrogates, which cannot be written as UTF-8. Names, keys and other column values keep :func:`clean_str`'s
    stricter cleaning: a line break in a job or dataset name is a mistake, in a message it is the message.
    """
    text = value if value.__class__ is str else clean_str(value)
    if text is None:  # clean_str gives None for None only
        return None
    if not text.isprintable():
        text = "".join(c for c in text if c.isprintable() or c in _KEPT_IN_TEXT or _is_text_character(c))
    return text[:MAX_STRING] if len(text) > MAX_STRING else text


def _is_text_character(char: str) -> bool:
    # isprintable() is also False for spaces other than " " and for format characters (a zero-width joiner in
    # an emoji): those are text. Control characters (Cc) and surrogates (Cs) are not.
    return unicodedata.category(char) not in ("Cc", "Cs")


def _json_default(value: Any) -> str:
    # Bytes as hex, as a bytes attribute value on its own is written.
    return value.hex() if isinstance(value, bytes) else str(value)


def to_int(value: Any) -> int | None:
    """An int from an int, an integral float or a numeric string; None otherwise."""
    if value.__class__ is int:  # the common case first (bool is a subclass, not this class)
        return value if _MIN_INT64 <= value <= _MAX_INT64 else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if _MIN_INT64 <= value <= _MAX_INT64 else None
    # Floats and strings go through the int64 range check too: a value Parquet cannot hold would fail
    # the whole file (and, in the processor, every later flush with it).
    if isinstance(value, float):
        return to_int(int(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return to_int(int(value.strip()))
        except ValueError:
            try:
                return to_int(float(value))
            except ValueError:
                return None
    return None


MAX_NAMES = 100
"""Items kept of a list of names (``job.owners``, ``job.inputs``): a run reading thousands of files lists the first."""


def to_names(value: Any) -> list[str] | None:
    """A list of names from a sequence of values or a single value (one item); empty and null items left out;
    None when nothing is left (the value is then kept as text in ``attributes``)."""
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else (value,)
    names = []
    for item in items:
        name = clean_str(item)
        if name:
            names.append(name)
            if len(names) == MAX_NAMES:
                break
    return names or None


def to_millis(value: Any) -> int | None:
    """Epoch milliseconds from an ISO 8601 string or an epoch number.

    The contract says epoch nanoseconds; seconds, milliseconds and microseconds are told apart by magnitude
    (a date after 1973 in each unit) because users pass all of them. Strings are read by :func:`parse_time`
    (what OpenLineage producers write, on every Python), then as ``datetime.fromisoformat`` reads them (a date
    alone), then as a number.
    """
    if isinstance(value, str):
        nanos = parse_time(value)
        if nanos is not None:
            return nanos // 1_000_000
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            number = to_int(text)
            return None if number is None else to_millis(number)
        return _epoch_nanos(parsed) // 1_000_000
    number = to_int(value)
    if number is None:
        return None
    magnitude = abs(number)
    if magnitude >= 10**17:
        return number // 1_000_000
    if magnitude >= 10**14:
        return number // 1_000
    if magnitude >= 10**11:
        return number
    return number * 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_time(value: Any) -> int | None:
    """Epoch nanoseconds (to the microsecond) of an ISO 8601 date-time; None if it is not one.

    Written out rather than ``datetime.fromisoformat``, which on Python 3.10 refuses ``Z`` and fractions of other
    than 3 or 6 digits, both of which OpenLineage producers send (the Java client writes nanoseconds). A time
    without an offset is UTC.
    """
    if not isinstance(value, str):
        return None
    match = _ISO.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        instant = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=_offset(offset),
        )
    except ValueError:  # month 13, hour 25, an offset over a day
        return None
    return _epoch_nanos(instant)


def _offset(text: str | None) -> timezone:
    if text is None or text in ("Z", "z"):
        return timezone.utc
    digits = text[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:4] or 0)
    return timezone(timedelta(minutes=-minutes if text[0] == "-" else minutes))


def _epoch_nanos(instant: datetime) -> int:
    # Integer arithmetic: ``instant.timestamp() * 1000`` is a float that lands a millisecond short for about one
    # time in 150 (2038-05-27T15:37:30.226Z gave ...225).
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=timezone.utc)
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _hex_span(span_id: int | None) -> str | None:
    return None if span_id is None else f"{span_id:016x}"


# Attributes held by columns of job_runs, and the coercion of each; a value that does not coerce stays
# in the attributes map so nothing the job said is lost.
_COLUMN_ATTRIBUTES = {
    semconv.JOB_NAME: clean_str,
    semconv.JOB_TYPE: clean_str,
    semconv.JOB_RUN_ID: clean_str,
    semconv.JOB_RUN_ATTEMPT: to_int,
    semconv.JOB_RUN_LOGICAL_DATE: to_millis,
    semconv.JOB_RUN_TYPE: clean_str,
    semconv.JOB_RECORDS_PROCESSED: to_int,
    semconv.DATASET_NAME: clean_str,
    semconv.ERROR_TYPE: clean_str,
    semconv.JOB_PARENT_NAME: clean_str,
    semconv.JOB_PARENT_RUN_ID: clean_str,
    semconv.JOB_OWNERS: to_names,
    semconv.JOB_INPUTS: to_names,
}


_STR_COLUMNS = frozenset(key for key, coerce in _COLUMN_ATTRIBUTES.items() if coerce is clean_str)
_INT_COLUMNS = frozenset(key for key, coerce in _COLUMN_ATTRIBUTES.items() if coerce is to_int)
_INT64_DIGITS = len(str(_MIN_INT64))

_READ_KEYS = frozenset(_COLUMN_ATTRIBUTES)
"""The attribute keys the mapping reads of a span (into its columns): never dropped by the attribute limit."""


def always_kept(job_keys: frozenset[str] | None) -> frozenset[str]:
    """The attribute keys a span keeps past the attribute limit: those the mapping reads, and the profile's job keys
    (:func:`otel_datasink.profiles.job_keys_of`), so that the limit never costs a span its run."""
    return _READ_KEYS | job_keys if job_keys else _READ_KEYS


def kept_attributes(pairs: Iterable[tuple[str, Any]], limit: int, always: frozenset[str]) -> tuple[dict[str, Any], int]:
    """The attributes of a span within the attribute limit, and how many were dropped.

    The first ``limit`` keys in order are kept (as the OpenTelemetry SDKs for Java, Go and JavaScript keep them: a
    new attribute past the limit is discarded), and any later attribute whose key is in ``always``
    (:func:`always_kept`).
    ``pairs`` may be a lazy iterable: nothing of a dropped attribute is held.
    """
    kept: dict[str, Any] = {}
    dropped = 0
    for key, value in pairs:
        if len(kept) < limit or key in always or key in kept:
            kept[key] = value
        else:
            dropped += 1
    return kept, dropped


def limited(record: SpanRecord, limits: SpanLimits, always: frozenset[str]) -> SpanRecord:
    """``record`` within the attribute and event limits (itself when it is): its attributes as
    :func:`kept_attributes` keeps them, its first ``limits.events`` events; its dropped counts raised by what was
    dropped. An event's own attributes are not limited: the rows keep none of them, only read a few by their keys."""
    attributes, events = record.attributes, record.events
    dropped_attributes = dropped_events = 0
    if len(attributes) > limits.attributes:
        attributes, dropped_attributes = kept_attributes(attributes.items(), limits.attributes, always)
    if len(events) > limits.events:
        dropped_events = len(events) - limits.events
        events = events[: limits.events]
    if attributes is record.attributes and events is record.events:
        return record
    return dataclasses.replace(
        record,
        attributes=attributes,
        events=events,
        dropped_attributes=record.dropped_attributes + dropped_attributes,
        dropped_events=record.dropped_events + dropped_events,
    )


def _columns_and_rest(attributes: Mapping[str, Any], max_length: int) -> tuple[dict[str, Any], dict[str, str], int]:
    """The column values of a span's attributes, the rest as text of at most ``max_length`` characters, and how many
    of those were cut."""
    columns: dict[str, Any] = {}
    rest: dict[str, str] = {}
    truncated = 0
    ints_fit = max_length >= _INT64_DIGITS
    for key, value in attributes.items():
        # Inline fast paths, decided by the value's class first: clean strings and int64 values need no call.
        kind = value.__class__
        if kind is str:
            if len(value) <= max_length and value.isprintable():
                if key in _STR_COLUMNS:
                    columns[key] = value
                    continue
                if key not in _COLUMN_ATTRIBUTES:
                    rest[key if key in _CLEAN_KEYS else _clean_key(key)] = value
                    continue
        elif kind is int and _MIN_INT64 <= value <= _MAX_INT64:
            if key in _INT_COLUMNS:
                columns[key] = value
                continue
            if key not in _COLUMN_ATTRIBUTES and ints_fit:
                rest[key if key in _CLEAN_KEYS else _clean_key(key)] = str(value)  # clean_str's text of an int
                continue
        coerce = _COLUMN_ATTRIBUTES.get(key)
        if coerce is not None:
            coerced = coerce(value)
            if coerced is not None:
                columns[key] = coerced
                continue
        text = _printable(value)
        if text is not None:
            if len(text) > max_length:
                text = text[:max_length]
                truncated += 1
            rest[key if key in _CLEAN_KEYS else _clean_key(key)] = text
    return columns, rest, truncated


def _record_truncation(rest: dict[str, str], record: SpanRecord, truncated: int, counts: Truncation | None) -> None:
    """Says in the row's ``attributes`` what the span limits took from it (reserved keys, set only then), and
    counts it."""
    for key, count in (
        (semconv.DROPPED_ATTRIBUTES_COUNT, record.dropped_attributes),
        (semconv.DROPPED_EVENTS_COUNT, record.dropped_events),
        (semconv.TRUNCATED_VALUES_COUNT, truncated),
    ):
        if count:
            rest[key] = str(count)
    if counts is not None:
        counts.add(Truncation(record.dropped_attributes, record.dropped_events, truncated))


_CLEAN_KEYS: set[str] = set()
"""Attribute keys seen to need no cleaning (a set lookup is cheaper than checking a key again); bounded."""


def _clean_key(key: Any) -> str:
    cleaned = clean_str(key) or ""
    if cleaned is key and key.__class__ is str and len(_CLEAN_KEYS) < 10_000:
        _CLEAN_KEYS.add(key)
    return cleaned


def _last_exception(events: Sequence[Event]) -> Mapping[str, Any] | None:
    for name, _, attributes in reversed(events):
        if name == semconv.EXCEPTION_EVENT:
            return attributes
    return None


def _status(record: SpanRecord, exception: Mapping[str, Any] | None) -> str:
    if record.end_time_ns is None:
        return STATUS_STARTED
    if record.status_code == STATUS_CODE_ERROR:
        return STATUS_FAILED
    if exception is not None and exception.get(semconv.EXCEPTION_ESCAPED) in (True, "true", "True"):
        return STATUS_FAILED
    return STATUS_SUCCESS


def _error_message(description: str, exception: Mapping[str, Any] | None) -> str | None:
    """The run's error message: the status description, else the exception's message; newlines kept.

    The SDK describes the status of a span an exception escaped as ``f"{type(exc).__name__}: {exc}"``
    (``opentelemetry.sdk.trace.Span.__exit__`` and ``opentelemetry.trace.use_span``), a composition of the two
    fields the exception event carries and the row keeps apart (``error_type``, ``error_message``): such a
    description gives the exception's message alone. Any other description is the span's own word, kept whole.
    """
    message = exception.get(semconv.EXCEPTION_MESSAGE) if exception else None
    if exception and description and message is not None and _is_sdk_description(description, exception, message):
        description = str(message)
    return clean_text(description) or clean_text(message) or None


def _is_sdk_description(description: str, exception: Mapping[str, Any], message: Any) -> bool:
    # exception.type is module.qualname (the builtins' bare); the description names the class alone.
    exception_type = exception.get(semconv.EXCEPTION_TYPE)
    if exception_type.__class__ is not str or not description.endswith(str(message)):
        return False
    named = description[: len(description) - len(str(message))]
    return named in (f"{exception_type}: ", f"{exception_type.rsplit('.', 1)[-1]}: ")


def is_job_span(record: SpanRecord) -> bool:
    """Whether the span is a job run under the contract's conventions: it carries ``job.name``."""
    return record.attributes.get(semconv.JOB_NAME) not in (None, "")


def job_run_row(
    record: SpanRecord, ingested_at_ms: int, limits: SpanLimits = DEFAULT_LIMITS, counts: Truncation | None = None
) -> dict[str, Any]:
    """The ``job_runs`` row of a job span: STARTED while ``end_time_ns`` is None, else SUCCESS or FAILED.

    Values of its ``attributes`` are cut to ``limits.attribute_length``; what the span limits took from the span is
    recorded in them (:data:`otel_datasink.semconv.DROPPED_ATTRIBUTES_COUNT` ...) and added to ``counts``.
    """
    columns, rest, truncated = _columns_and_rest(record.attributes, limits.attribute_length)
    if truncated or record.dropped_attributes or record.dropped_events:
        _record_truncation(rest, record, truncated, counts)
    get = columns.get
    start_time_ns = record.start_time_ns
    start_ms = None if start_time_ns is None else start_time_ns // 1_000_000
    error_type = error_message = end_ms = duration_ms = None
    end_time_ns = record.end_time_ns
    if end_time_ns is None:
        status = STATUS_STARTED
        event_time = start_ms
    else:
        end_ms = event_time = end_time_ns // 1_000_000
        duration_ms = None if start_ms is None else max(0, end_ms - start_ms)
        exception = _last_exception(record.events) if record.events else None
        status = _status(record, exception)
        if status == STATUS_FAILED:
            error_type = get(semconv.ERROR_TYPE) or (
                clean_str(exception.get(semconv.EXCEPTION_TYPE)) if exception else None
            )
            error_message = _error_message(record.status_message, exception)
    job_type = get(semconv.JOB_TYPE)
    if job_type is None:
        job_type = "batch"
    elif job_type not in semconv.JOB_TYPES:  # the usual lower-case value needs no .lower()
        job_type = job_type.lower()
        if job_type not in semconv.JOB_TYPES:
            rest[semconv.JOB_TYPE] = job_type
            job_type = "batch"
    parent = record.parent_span_id
    try:  # to_bytes().hex() is a third of the cost of a format spec; it fails only on ids out of range
        trace_id = record.trace_id.to_bytes(16, "big").hex()
        span_id = record.span_id.to_bytes(8, "big").hex()
        parent_span_id = None if parent is None else parent.to_bytes(8, "big").hex()
    except (OverflowError, AttributeError):
        trace_id, span_id, parent_span_id = f"{record.trace_id:032x}", f"{record.span_id:016x}", _hex_span(parent)
    service_name = record.resource.get(semconv.SERVICE_NAME)
    if service_name.__class__ is not str or len(service_name) > MAX_STRING or not service_name.isprintable():
        service_name = clean_str(service_name)
    return {
        # The default run_id: trace id and span id in lower-case hex, so the same span always maps alike.
        "run_id": get(semconv.JOB_RUN_ID) or trace_id + span_id,
        "job_name": get(semconv.JOB_NAME),
        "job_type": job_type,
        "status": status,
        "dataset": get(semconv.DATASET_NAME),
        "event_time": event_time,
        "start_time": start_ms,
        "end_time": end_ms,
        "duration_ms": duration_ms,
        "records_processed": get(semconv.JOB_RECORDS_PROCESSED),
        "error_type": error_type,
        "error_message": error_message,
        "attempt": get(semconv.JOB_RUN_ATTEMPT, 1),
        "logical_date": get(semconv.JOB_RUN_LOGICAL_DATE),
        "run_type": _run_type(get(semconv.JOB_RUN_TYPE)),
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent_span_id,
        "service_name": service_name,
        "attributes": rest,
        "ingested_at": ingested_at_ms,
        "parent_job_name": get(semconv.JOB_PARENT_NAME),
        "parent_run_id": get(semconv.JOB_PARENT_RUN_ID),
        "owners": get(semconv.JOB_OWNERS),
        "inputs": get(semconv.JOB_INPUTS),
    }


def _run_type(value: str | None) -> str | None:
    # "Backfill" must count as a backfill (watermarks, baselines); values outside the contract's stay as given.
    if value is None or value in semconv.RUN_TYPES:
        return value
    lowered = value.lower()
    return lowered if lowered in semconv.RUN_TYPES else value


def dataset_rows(record: SpanRecord, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``dataset_status`` rows of an ended job span, given its ``job_runs`` row.

    One per ``dataset.update`` event; a job span with ``dataset.name`` and no such event yields one
    update of that dataset at the span's end (records_written = records_processed). A failed run's
    updates are recorded with status FAILED, so freshness only follows successes.
    """
    status = run["status"]
    if status == STATUS_STARTED:
        return []

    def update(dataset: str, updated_at: int, written: Any, count: Any, watermark: Any, sla: Any) -> dict[str, Any]:
        # One dict literal per row: cheaper than merging a dict of the run's columns into each.
        return {
            "dataset": dataset,
            "updated_at": updated_at,
            "records_written": written,
            "record_count": count,
            "watermark": _watermark(watermark, run),
            "freshness_sla_minutes": sla,
            "event_time": updated_at,
            "status": status,
            "job_name": run["job_name"],
            "run_id": run["run_id"],
            "trace_id": run["trace_id"],
            "span_id": run["span_id"],
            "service_name": run["service_name"],
            "ingested_at": run["ingested_at"],
            "owners": run["owners"],
        }

    rows = []
    for name, time_ns, attributes in record.events:
        if name != semconv.DATASET_UPDATE_EVENT:
            continue
        dataset = clean_str(attributes.get(semconv.DATASET_NAME))
        if dataset:
            rows.append(
                update(
                    dataset,
                    time_ns // 1_000_000,
                    to_int(attributes.get(semconv.DATASET_RECORDS_WRITTEN)),
                    to_int(attributes.get(semconv.DATASET_RECORD_COUNT)),
                    attributes.get(semconv.DATASET_WATERMARK),
                    to_int(attributes.get(semconv.DATASET_FRESHNESS_SLA_MINUTES)),
                )
            )
    if not rows and run["dataset"]:
        rows.append(update(run["dataset"], run["end_time"], run["records_processed"], None, None, None))
    return rows


def _watermark(value: Any, run: dict[str, Any]) -> int | None:
    # A backfill of old data must not make the dataset look fresh: without a watermark of its own, a
    # backfill's data is as new as its logical date. Other runs leave it None (the views then use
    # updated_at): a scheduler's logical date is the start of the interval, older than the data.
    watermark = None if value is None else to_millis(value)
    if watermark is None and run["run_type"] == "backfill":
        return run["logical_date"]
    return watermark


SpanKey = tuple[int, int]
"""(trace id, span id) of a span."""

MAX_OPEN_SPANS = 10_000
"""Spans each table of an :class:`OpenSpans` holds: past it, the oldest entry makes room (a span that never ended,
or whose end was never mapped: unsampled, dropped from a full queue, not a run), so that spans that never end cost
memory within the bound and never turn the enclosing runs off."""


def _put(table: dict[SpanKey, Any], key: SpanKey, value: Any) -> None:
    """Sets ``table[key]``, first evicting the oldest entry of a table holding :data:`MAX_OPEN_SPANS`."""
    if len(table) >= MAX_OPEN_SPANS:
        try:
            table.pop(next(iter(table)), None)
        except (RuntimeError, StopIteration):  # another thread changed it meanwhile: a later put evicts
            pass
    table[key] = value


class OpenSpans:
    """What one process knows of its open spans across the batches it maps (the in-process processor's), so that a
    run finds its enclosing job span in an earlier batch.

    The job's threads note each span as it starts and ends (:meth:`started`, :meth:`ended`: cheap, never raising;
    a dict's single operations are atomic under the GIL): a job span gets, at its start, the nearest job span
    enclosing it (through spans that are not job spans), while those spans are still open. :func:`map_records` keeps
    the runs started and not ended, and forgets a job span's enclosing one when it maps its end."""

    def __init__(self) -> None:
        self.runs: dict[SpanKey, tuple[str, str]] = {}
        """An open run's span -> its job_name and run_id."""
        self.nearest: dict[SpanKey, SpanKey] = {}
        """An open span at or under a job span -> that job span (itself, for a job span)."""
        self.enclosing: dict[SpanKey, SpanKey] = {}
        """A job span -> the nearest job span strictly above it, noted at its start."""

    def started(self, trace_id: int, span_id: int, parent_span_id: int | None, *, job: bool) -> None:
        """Notes a span that started: ``job`` when it may be a run (a job span)."""
        nearest = self.nearest
        above = None if parent_span_id is None else nearest.get((trace_id, parent_span_id))
        key = (trace_id, span_id)
        if job:
            _put(nearest, key, key)
            if above is not None:
                _put(self.enclosing, key, above)
        elif above is not None:  # a span under a job span (spans outside any are not noted)
            _put(nearest, key, above)

    def ended(self, trace_id: int, span_id: int) -> None:
        """Forgets a span that ended (its enclosing job span stays until its end row is mapped)."""
        self.nearest.pop((trace_id, span_id), None)

    def enclosing_run(self, key: SpanKey, batch: dict[SpanKey, Any]) -> tuple[str, str] | None:
        """(job_name, run_id) of the nearest run above job span ``key``, in ``batch`` (span -> run identity) or
        among the open runs."""
        above = self.enclosing.get(key)
        for _ in range(len(self.enclosing) + 1):  # bounded, whatever the notes hold
            if above is None:
                return None
            found = batch.get(above) or self.runs.get(above)
            if isinstance(found, tuple):
                return found
            above = self.enclosing.get(above)  # a job span that made no run: the one above it
        return None

    def mapped(self, key: SpanKey, run: dict[str, Any]) -> None:
        """Keeps a started run, forgets an ended one."""
        if run["status"] == STATUS_STARTED:
            _put(self.runs, key, (run["job_name"], run["run_id"]))
        else:
            self.runs.pop(key, None)
            self.enclosing.pop(key, None)


def check_rows(record: SpanRecord, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``dataset_checks`` rows of an ended job span, given its ``job_runs`` row: one per ``dataset.check`` event
    with a ``check.name`` and a readable ``check.passed`` (a bool, ``true``/``false``, ``1``/``0``, ``yes``/``no``);
    an event without either is no result, and left out. The dataset is the event's ``dataset.name``, else the run's.
    """
    if run["status"] == STATUS_STARTED:
        return []
    rows = []
    for name, time_ns, attributes in record.events:
        if name != semconv.DATASET_CHECK_EVENT:
            continue
        get = attributes.get
        dataset = clean_str(get(semconv.DATASET_NAME)) or run["dataset"]
        check_name = clean_str(get(semconv.CHECK_NAME))
        passed = _passed(get(semconv.CHECK_PASSED))
        if not dataset or not check_name or passed is None:
            continue
        checked_at = time_ns // 1_000_000
        rows.append(
            {
                "dataset": dataset,
                "check_name": check_name,
                "status": CHECK_PASSED if passed else CHECK_FAILED,
                "assertion": clean_str(get(semconv.CHECK_ASSERTION)),
                "column_name": clean_str(get(semconv.CHECK_COLUMN)),
                "actual": clean_str(get(semconv.CHECK_ACTUAL)),
                "expected": clean_str(get(semconv.CHECK_EXPECTED)),
                "severity": clean_str(get(semconv.CHECK_SEVERITY)),
                "checked_at": checked_at,
                "job_name": run["job_name"],
                "run_id": run["run_id"],
                "attempt": run["attempt"],
                "trace_id": run["trace_id"],
                "span_id": run["span_id"],
                "event_time": checked_at,
                "ingested_at": run["ingested_at"],
            }
        )
    return rows


def _passed(value: Any) -> bool | None:
    # OTLP carries a bool, but producers write "true", "False" or 1 as well; anything else is no result.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    try:
        return flag(value)
    except ValueError:
        return None


def map_records(
    records: Iterable[SpanRecord],
    profile: Callable[[SpanRecord], MappedSpan],
    ingested_at_ms: int | None = None,
    limits: SpanLimits = DEFAULT_LIMITS,
    counts: Truncation | None = None,
    open_spans: OpenSpans | None = None,
    skipped: Iterable[tuple[int, int, int | None]] = (),
) -> Rows:
    """Rows of the span tables (``job_runs``, ``dataset_status``, ``dataset_checks``) for a batch of spans; spans
    the profile does not take as job runs are skipped, a span it makes several records of (:data:`MappedSpan`)
    gives the rows of each, in order, and a :attr:`~SpanRecord.checks_only` record makes only its
    ``dataset_checks`` rows.

    Each span is first brought within ``limits`` (:func:`limited`, before the profile reads it, as the SDK's
    limits bound a span before any processor sees it); what they took from the rows is added to ``counts``.
    A run without ``job.parent.*`` attributes gets the nearest enclosing job span of its trace as its parent, when
    that span is in the batch (through spans of the batch that are not runs) or among ``open_spans`` (updated).
    Not covered, so NULL: an enclosing span in another process (a remote parent), and, for the exporter, the
    collector and replay (which have no ``open_spans``), one in another export batch or request; a parent the span
    names (``job.parent.*``) is never replaced. ``skipped`` are the links (trace id, span id, parent span id) of spans
    of the batch a decoding left out as no runs (:class:`otel_datasink.otlp.SkippedSpans`): the walk goes through
    them as through the records the profile did not take, and reads them only when a run's parent is no run.
    """
    ingested = ingested_at_ms if ingested_at_ms is not None else time.time_ns() // 1_000_000
    max_attributes, max_events = limits.attributes, limits.events
    always = always_kept(getattr(profile, "job_keys", None))  # profiles.job_keys_of, which imports this module
    runs: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    keys: list[SpanKey] = []
    orphans: list[tuple[SpanKey, int, dict[str, Any]]] = []
    # (trace id, span id) -> its run's (job_name, run_id), or the parent span id of a span that is not a run.
    enclosing: dict[SpanKey, tuple[str, str] | int | None] = {}
    checks: list[dict[str, Any]] = []
    for span in records:
        if len(span.attributes) > max_attributes or len(span.events) > max_events:
            span = limited(span, limits, always)
        mapped = profile(span)
        if not mapped:  # None, or no record
            enclosing.setdefault((span.trace_id, span.span_id), span.parent_span_id)
            continue
        # A span is most often one run; a profile may make several of it (one per try), each a row of its own.
        counted = counts
        for record in records_of(mapped):
            run = job_run_row(record, ingested, limits, counted)
            counted = None  # what the limits took from a span is counted once, however many runs it makes
            if record.checks_only:
                checks.extend(check_rows(record, run))
                continue
            runs.append(run)
            key = (record.trace_id, record.span_id)
            keys.append(key)
            enclosing[key] = (run["job_name"], run["run_id"])
            # A trace's root has no enclosing span; another run without parent attributes looks for one.
            if record.parent_span_id is not None and run["parent_job_name"] is None and run["parent_run_id"] is None:
                orphans.append((key, record.parent_span_id, run))
            if record.end_time_ns is not None:  # a STARTED row updates no dataset
                updates.extend(dataset_rows(record, run))
                if record.events:
                    checks.extend(check_rows(record, run))
    if skipped and any(not isinstance(enclosing.get((key[0], parent)), tuple) for key, parent, _ in orphans):
        for trace_id, span_id, parent_span_id in skipped:  # after the runs: a run's entry is never replaced
            enclosing.setdefault((trace_id, span_id), parent_span_id)
    for key, parent_span_id, run in orphans:
        found = _enclosing_run(key, parent_span_id, enclosing, open_spans)
        if found is not None:
            run["parent_job_name"], run["parent_run_id"] = found
    if open_spans is not None:
        for key, run in zip(keys, runs, strict=True):
            open_spans.mapped(key, run)
    return {JOB_RUNS_TABLE: runs, DATASET_STATUS_TABLE: updates, DATASET_CHECKS_TABLE: checks}


def _enclosing_run(
    key: SpanKey,
    parent_span_id: int,
    enclosing: dict[SpanKey, tuple[str, str] | int | None],
    open_spans: OpenSpans | None,
) -> tuple[str, str] | None:
    """(job_name, run_id) of the nearest job span above the run's span ``key``: through the spans of the batch,
    else as ``open_spans`` noted it at the span's start."""
    above = (key[0], parent_span_id)
    for _ in range(len(enclosing)):  # bounded: a cycle of parent ids (a broken producer) ends here
        found = enclosing.get(above)
        if not isinstance(found, int):
            if found is not None:
                return found
            break
        above = (key[0], found)
    return None if open_spans is None else open_spans.enclosing_run(key, enclosing)
