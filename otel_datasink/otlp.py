"""OTLP trace data (protobuf or JSON) as :class:`~otel_datasink.mapping.SpanRecord`: the one OTLP decoding.

Both the collector and replay read OTLP through this module, and from here on a span goes through the same
profile and :func:`~otel_datasink.mapping.map_records` as a span of the in-process SDK path, so one span gives
the same rows either way. Values are converted to what the SDK would hold for the same attribute (arrays as
tuples, key-value lists as dicts, bytes as bytes), so the coercions in :mod:`otel_datasink.mapping` see the
same Python values.

A span whose trace id or span id is missing, all zero or of the wrong length cannot be identified, and one without
an end time (``end_time_unix_nano`` 0, which OTLP requires: exporters send spans once they end) is no run's state:
both are rejected, and so is a JSON span with a malformed field. Rejections are counted by reason
(:class:`Rejections`, for OTLP's ``partial_success``); everything else is taken as sent.

The protobuf decoding applies the span limits (:class:`~otel_datasink.config.SpanLimits`) as it reads, as
:func:`~otel_datasink.mapping.map_records` would after it: the attributes and events a span drops are never held
(a span of a million attributes is a dict of 128), and :func:`protobuf_shape` counts what a request holds, so that
the collector knows what decoding it will cost before it does.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import functools
import itertools
import math
import operator
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from otel_datasink.config import SpanLimits
from otel_datasink.mapping import DEFAULT_LIMITS, Event, SpanRecord, always_kept, kept_attributes

_SCALAR_KINDS = frozenset(("string_value", "bool_value", "int_value", "double_value", "bytes_value"))


class OtlpDecodeError(ValueError):
    """Data that is not OTLP trace data at all (as opposed to single spans that are rejected)."""


INVALID_ID = "without a valid trace or span id"
NO_END_TIME = "without an end time"
INVALID_TIME = "with a time that is not a fixed64 count of nanoseconds"
MALFORMED = "with a malformed field"
"""Why a span is rejected (:attr:`Rejections.reasons`): read as ``"<count> span(s) <reason>"``."""


class Rejections(int):
    """How many spans of a request were rejected (an int: OTLP's ``rejected_spans``), and why."""

    reasons: dict[str, int]
    """Reason (:data:`INVALID_ID`, :data:`NO_END_TIME`, :data:`INVALID_TIME`, :data:`MALFORMED`) -> spans."""

    def __new__(cls, reasons: Mapping[str, int] | None = None) -> Rejections:
        """The rejections of ``reasons`` (reason -> spans)."""
        counts = {reason: count for reason, count in (reasons or {}).items() if count}
        rejections = super().__new__(cls, sum(counts.values()))
        rejections.reasons = counts
        return rejections

    def describe(self) -> str:
        """``"2 span(s) without an end time; 1 span(s) with a malformed field"``: what each reason cost."""
        return "; ".join(f"{count} span(s) {reason}" for reason, count in self.reasons.items())


class _Rejected(Exception):
    """A JSON span rejected for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- protobuf ----------------------------------------------------------------------------------------


def _wire_traces_data(encoded: Mapping[str, str]) -> type[Message]:
    """``TracesData`` as parsed here: OTLP's own messages, except that the field ``encoded[message]`` of each message
    named stays encoded (one ``bytes`` value per item: upb creates no message for it).

    ``ExportTraceServiceRequest`` has the same field 1, so it parses as this type too. The messages live in a pool of
    their own, beside the real ones.
    """

    def encode_fields(messages: Iterable[descriptor_pb2.DescriptorProto], prefix: str) -> None:
        for message in messages:
            name = f"{prefix}.{message.name}"
            for field in message.field:
                if field.name == encoded.get(name):
                    field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    field.ClearField("type_name")
            encode_fields(message.nested_type, name)

    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2, trace_pb2):
        file = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        encode_fields(file.message_type, file.package)
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("opentelemetry.proto.trace.v1.TracesData"))


_WireTracesData = _wire_traces_data(
    {
        "opentelemetry.proto.resource.v1.Resource": "attributes",
        "opentelemetry.proto.trace.v1.Span": "attributes",
        "opentelemetry.proto.trace.v1.Span.Event": "attributes",
    }
)
"""What requests are decoded as: each ``KeyValue`` of a span, event or resource is one ``bytes`` value, and most of
them are decoded by a dictionary lookup (:class:`_Decoded`): a job's attributes repeat from span to span."""
_SpanlessTracesData = _wire_traces_data(
    {"opentelemetry.proto.resource.v1.Resource": "attributes", "opentelemetry.proto.trace.v1.ScopeSpans": "spans"}
)
"""What a request of no job span is parsed as, only to count its spans per scope: each span one ``bytes`` value."""
_parse_key_value = common_pb2.KeyValue.FromString


def _value(any_value: Any) -> Any:
    """The Python value of an ``AnyValue``, as the SDK would hold it."""
    kind = any_value.WhichOneof("value")
    if kind in _SCALAR_KINDS:
        return getattr(any_value, kind)
    if kind == "array_value":
        return tuple([_value(item) for item in any_value.array_value.values])
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return None


class _Decoded(dict):
    """Encoded ``KeyValue`` -> (key, value): looking one up decodes it, and keeps it if its value is a scalar.

    A lookup that hits runs in C (``dict(map(decoded.__getitem__, key_values))`` builds an attribute dict
    without a Python call per attribute); the dict is cleared when full, as values seen once come and go.
    """

    max_entries = 32_768
    max_bytes = 256

    def __missing__(self, encoded: bytes) -> tuple[str, Any]:
        # Raises DecodeError as parsing the whole request with OTLP's messages would (bad UTF-8, a torn field).
        key_value = _parse_key_value(encoded)
        value = key_value.value
        kind = value.WhichOneof("value")
        if kind not in _SCALAR_KINDS:
            return key_value.key, _value(value)
        decoded = key_value.key, getattr(value, kind)
        # Only immutable values are shared between records; arrays and key-value lists are built afresh.
        if len(encoded) <= self.max_bytes:
            if len(self) >= self.max_entries:
                self.clear()
            self[encoded] = decoded
        return decoded


_decoded = _Decoded().__getitem__


@functools.lru_cache(maxsize=64)
def _needles(job_keys: frozenset[str]) -> tuple[bytes, ...]:
    """Byte strings of which every key of ``job_keys`` contains one: the keys themselves, UTF-8, less those that
    contain a shorter one (``dag_id`` stands for ``airflow.dag_id`` too).

    A key is written verbatim in an encoded ``KeyValue`` (a string field's bytes are its UTF-8, whatever the order
    of the fields or the form of their lengths), and so in the encoding of the span, scope or request around it:
    bytes holding none of these can hold none of the keys, and a span whose encoding holds none is no job span,
    told without decoding it. Bytes holding one may still be no job span's (``dag_id`` in a URL): such a span is
    decoded and its keys tested.
    """
    needles: list[bytes] = []
    for key in sorted((key.encode("utf-8", "surrogatepass") for key in job_keys), key=len):
        if not any(needle in key for needle in needles):
            needles.append(key)
    return tuple(needles)


def _holds_any(data: bytes, needles: tuple[bytes, ...]) -> bool:
    """Whether ``data`` holds one of ``needles`` (a scan in C per needle)."""
    return any(map(data.__contains__, needles))


class SkippedSpans:
    """The spans a decoding skipped as no job span's, kept as parsed: for the links (trace id, span id, parent span
    id) :func:`~otel_datasink.mapping.map_records` walks up from a run to its nearest enclosing job span, through
    spans that are no runs. They are read only when a walk needs them (a run whose parent is no run of the batch),
    and give the links the spans would have given as records: none for a span rejected (invalid ids, no end time).
    """

    def __init__(self) -> None:
        self._messages: list[Iterable[Any]] = []
        self._links: list[tuple[int, int, int | None]] = []

    def add_messages(self, spans: Iterable[Any]) -> None:
        """Adds parsed ``Span`` messages (a scope's, whole: the links of the job spans among them change nothing)."""
        self._messages.append(spans)

    def add_link(self, trace_id: int, span_id: int, parent_span_id: int | None) -> None:
        """Adds the link of a span already decoded (OTLP JSON)."""
        self._links.append((trace_id, span_id, parent_span_id))

    def __bool__(self) -> bool:
        return bool(self._messages or self._links)

    def __iter__(self) -> Iterator[tuple[int, int, int | None]]:
        from_bytes = int.from_bytes
        for span in itertools.chain.from_iterable(self._messages):
            raw_trace_id, raw_span_id = span.trace_id, span.span_id
            if len(raw_trace_id) != 16 or len(raw_span_id) != 8 or not span.end_time_unix_nano:
                continue
            trace_id, span_id = from_bytes(raw_trace_id, "big"), from_bytes(raw_span_id, "big")
            if trace_id and span_id:
                parent = span.parent_span_id
                yield trace_id, span_id, (from_bytes(parent, "big") or None) if len(parent) == 8 else None
        yield from self._links


def records_from_protobuf(
    body: bytes,
    *,
    job_keys: frozenset[str] | None = None,
    limits: SpanLimits = DEFAULT_LIMITS,
    unrecognised: collections.Counter[str] | None = None,
    skipped: SkippedSpans | None = None,
) -> tuple[list[SpanRecord], Rejections, int]:
    """The spans of an encoded ``ExportTraceServiceRequest`` or ``TracesData``: records, rejected, all spans.

    With ``job_keys`` (a profile's, :func:`otel_datasink.profiles.job_keys_of`), a span without any of these
    attribute keys is skipped: the profile could not take it, so no record is built for it, and it is not
    counted as rejected (nor checked: an invalid id or a missing end time makes it no run either). It is told
    without decoding it where that is cheaper (:func:`_needles`): a request whose encoding holds none of the keys
    is skipped whole at the cost of one scan of its bytes in C; otherwise, once a span of a scope turned out no job
    span, the next ones are scanned one by one before they are decoded (until one is a job span again), and only a
    span whose encoding holds a key is decoded. Skipped spans are added to ``unrecognised``, if given, per
    instrumentation scope name (spans of no producer the profile knows), and to ``skipped``, if given, when the
    request may have job spans (the links of the enclosing-job-span walk, :class:`SkippedSpans`). The resource of
    spans of which none is a job span is never decoded.

    Each record is within ``limits`` (:func:`otel_datasink.mapping.limited`, with the keys of ``job_keys`` always
    kept): what it dropped is in its ``dropped_attributes`` and ``dropped_events``.

    Raises ``google.protobuf.message.DecodeError`` for a body that does not parse as OTLP, wherever in it the
    fault is (as parsing it with OTLP's own messages would), except, with ``job_keys``, within the attributes of a
    span whose encoding holds none of the keys (and of its events), and of a resource none of whose spans is a job
    span, and within the spans of a request whose encoding holds none of the keys (counted, not parsed): what is
    not read cannot fail the request, and such spans are never read.
    """
    needles = () if job_keys is None else _needles(job_keys)
    if job_keys is not None and not _holds_any(body, needles):
        # No span of the request can be a job span: counted per scope, none parsed, none a link of a run.
        return [], Rejections(), _count_skipped(_SpanlessTracesData.FromString(body), unrecognised)
    message: Any = _WireTracesData.FromString(body)  # a class built at run time: its fields are not typed
    records: list[SpanRecord] = []
    append = records.append
    rejected: collections.Counter[str] = collections.Counter()
    spans = 0
    from_bytes = int.from_bytes
    decoded = _decoded  # dict(map(decoded, key_values)): a span's attribute dict, built in C when all hit
    max_attributes, max_events = limits.attributes, limits.events
    always = always_kept(job_keys)
    for resource_spans in message.resource_spans:
        resource: dict[str, Any] | None = None  # decoded for the first job span: a resource of none is never read
        for scope_spans in resource_spans.scope_spans:
            scope_span_list = scope_spans.spans
            spans += len(scope_span_list)
            skipped_in_scope = 0
            # Whether to scan a span's encoding before decoding it: once one was no job span, as the next is
            # likely alike (a scope of spans that are not runs), until one is a job span again.
            pretest = False
            for span in scope_span_list:
                key_values = span.attributes
                if pretest and not _holds_any(span.SerializeToString(), needles):
                    skipped_in_scope += 1
                    continue
                try:
                    if len(key_values) > max_attributes:
                        attributes, dropped_attributes = kept_attributes(
                            map(decoded, key_values), max_attributes, always
                        )
                    else:
                        attributes, dropped_attributes = dict(map(decoded, key_values)), 0
                except DecodeError:
                    # A span whose encoding holds no job key is never read, whether scanned first or not.
                    if job_keys is None or _holds_any(span.SerializeToString(), needles):
                        raise
                    attributes = {}
                if job_keys is not None and job_keys.isdisjoint(attributes):
                    skipped_in_scope += 1
                    pretest = True
                    continue
                pretest = False
                if resource is None:
                    resource = dict(map(decoded, resource_spans.resource.attributes))
                events = span.events
                raw_trace_id = span.trace_id
                raw_span_id = span.span_id
                trace_id = from_bytes(raw_trace_id, "big")
                span_id = from_bytes(raw_span_id, "big")
                end_time = span.end_time_unix_nano
                valid_ids = trace_id and span_id and len(raw_trace_id) == 16 and len(raw_span_id) == 8
                if not valid_ids or not end_time:
                    for event in events:  # decoded only to fail the request on a malformed attribute
                        dict(map(decoded, event.attributes))
                    rejected[NO_END_TIME if valid_ids else INVALID_ID] += 1
                    continue
                parent = span.parent_span_id
                status = span.status
                event_list: Sequence[Event]
                if len(events) > max_events:
                    event_list, dropped_events = _limited_events(events, max_events)
                else:
                    event_list = (
                        [(e.name, e.time_unix_nano, dict(map(decoded, e.attributes))) for e in events] if events else ()
                    )
                    dropped_events = 0
                append(
                    SpanRecord(
                        span.name,
                        trace_id,
                        span_id,
                        (from_bytes(parent, "big") or None) if len(parent) == 8 else None,
                        span.start_time_unix_nano,
                        end_time,
                        status.code,
                        status.message,
                        attributes,
                        event_list,
                        resource,
                        dropped_attributes,
                        dropped_events,
                    )
                )
            if skipped_in_scope:
                if unrecognised is not None:
                    unrecognised[scope_spans.scope.name] += skipped_in_scope
                if skipped is not None:
                    skipped.add_messages(scope_span_list)
    return records, Rejections(rejected), spans


def _count_skipped(message: Any, unrecognised: collections.Counter[str] | None) -> int:
    """The spans of a parsed request, each added to ``unrecognised`` (if given) under its scope name."""
    spans = 0
    for resource_spans in message.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            count = len(scope_spans.spans)
            spans += count
            if count and unrecognised is not None:
                unrecognised[scope_spans.scope.name] += count
    return spans


def _limited_events(events: Any, limit: int) -> tuple[list[Event], int]:
    """The first ``limit`` of a span's events, decoded, and how many were dropped. The others are read only to fail
    the request on a malformed attribute, one at a time."""
    kept: list[Event] = [(e.name, e.time_unix_nano, dict(map(_decoded, e.attributes))) for e in events[:limit]]
    for event in itertools.islice(events, limit, None):
        collections.deque(map(_decoded, event.attributes), maxlen=0)
    return kept, len(events) - limit


@dataclasses.dataclass(frozen=True)
class Shape:
    """What an encoded request holds, counted on its parse (:func:`protobuf_shape`): what decoding it costs follows."""

    spans: int
    events: int
    """Events of its spans, dropped ones too (the parse holds each)."""
    kept_events: int
    """Events within the event limit: those decoded."""
    attributes: int
    """Encoded attributes of its spans, events and resources, dropped ones too (the parse holds each)."""
    kept_attributes: int
    """Attributes decoded: of its spans within the attribute limit, and all of its events and resources (those of
    the events past the event limit too: an upper bound)."""


_ATTRIBUTES = operator.attrgetter("attributes")
_EVENTS = operator.attrgetter("events")


def protobuf_shape(body: bytes, limits: SpanLimits = DEFAULT_LIMITS) -> Shape:
    """The :class:`Shape` of an encoded ``ExportTraceServiceRequest`` or ``TracesData``, counted without decoding a
    span (the lengths of its repeated fields, taken in C); raises ``DecodeError`` as :func:`records_from_protobuf`."""
    message: Any = _WireTracesData.FromString(body)
    spans = events = kept_events = attributes = kept_attributes = 0
    for resource_spans in message.resource_spans:
        resource_attributes = len(resource_spans.resource.attributes)
        attributes += resource_attributes
        kept_attributes += resource_attributes
        for scope_spans in resource_spans.scope_spans:
            span_list = scope_spans.spans
            spans += len(span_list)
            total, kept = _lengths(map(_ATTRIBUTES, span_list), limits.attributes)
            attributes += total
            kept_attributes += kept
            total, kept = _lengths(map(_EVENTS, span_list), limits.events)
            events += total
            kept_events += kept
            if total:
                event_list = itertools.chain.from_iterable(map(_EVENTS, span_list))
                total = sum(map(len, map(_ATTRIBUTES, event_list)))
                attributes += total
                kept_attributes += total
    return Shape(spans, events, kept_events, attributes, kept_attributes)


def _lengths(containers: Iterable[Any], limit: int) -> tuple[int, int]:
    """The sum of the lengths of ``containers``, and the sum of each capped at ``limit``."""
    lengths = list(map(len, containers))
    return sum(lengths), sum(map(min, lengths, itertools.repeat(limit)))


# --- JSON --------------------------------------------------------------------------------------------


def _field(obj: Mapping[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    # The OTLP JSON encoding uses lowerCamelCase; protobuf's JSON parsers also accept the original names.
    value = obj.get(camel)
    if value is None:
        value = obj.get(snake, default)
    return default if value is None else value


def _json_int(value: Any) -> int:
    # int64 and fixed64 travel as decimal strings; some encoders send numbers.
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value)
    raise ValueError(f"not an integer: {value!r}")


def _json_time(value: Any) -> int:
    # A fixed64 on the wire: a JSON number outside it is no time (it would overflow the tables' timestamps).
    try:
        time_ns = _json_int(value)
    except ValueError:
        raise _Rejected(INVALID_TIME) from None
    if not 0 <= time_ns < 2**64:
        raise _Rejected(INVALID_TIME)
    return time_ns


_SPECIAL_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _json_value(any_value: Any) -> Any:
    if not isinstance(any_value, Mapping):
        return None
    for camel, snake in (
        ("stringValue", "string_value"),
        ("boolValue", "bool_value"),
        ("intValue", "int_value"),
        ("doubleValue", "double_value"),
        ("arrayValue", "array_value"),
        ("kvlistValue", "kvlist_value"),
        ("bytesValue", "bytes_value"),
    ):
        value = any_value.get(camel, any_value.get(snake))
        if value is None:
            continue
        if camel == "stringValue":
            return str(value)
        if camel == "boolValue":
            return bool(value)
        if camel == "intValue":
            return _json_int(value)
        if camel == "doubleValue":
            return _SPECIAL_DOUBLES[value] if isinstance(value, str) and value in _SPECIAL_DOUBLES else float(value)
        if camel == "arrayValue":
            return tuple(_json_value(item) for item in (value.get("values") or ()))
        if camel == "kvlistValue":
            return _json_attributes(value.get("values") or ())
        return base64.b64decode(value, validate=False)
    return None


def _json_attributes(key_values: Iterable[Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for kv in key_values:
        if isinstance(kv, Mapping) and "key" in kv:
            attributes[str(kv["key"])] = _json_value(kv.get("value"))
    return attributes


_HEX = frozenset(string.hexdigits)


def _json_id(value: Any, length: int) -> int | None:
    # Ids are hex in OTLP JSON (not base64 as in protobuf's generic JSON mapping).
    if not isinstance(value, str) or len(value) != 2 * length or not _HEX.issuperset(value):
        return None
    return int(value, 16) or None


def _json_status_code(value: Any) -> int:
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        return {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}.get(value, 0)
    return _json_int(value)


def _json_span(span: Mapping[str, Any], resource: Mapping[str, Any]) -> SpanRecord:
    # Raises _Rejected (or the ValueError, TypeError... of a malformed field) for a span that cannot be taken.
    trace_id = _json_id(_field(span, "traceId", "trace_id"), 16)
    span_id = _json_id(_field(span, "spanId", "span_id"), 8)
    if trace_id is None or span_id is None:
        raise _Rejected(INVALID_ID)
    start_time_ns = _json_time(_field(span, "startTimeUnixNano", "start_time_unix_nano", 0))
    end_time_ns = _json_time(_field(span, "endTimeUnixNano", "end_time_unix_nano", 0))
    if not end_time_ns:
        raise _Rejected(NO_END_TIME)
    status = _field(span, "status", "status", {})
    events: list[Event] = [
        (
            str(_field(event, "name", "name", "")),
            _json_time(_field(event, "timeUnixNano", "time_unix_nano", 0)),
            _json_attributes(_field(event, "attributes", "attributes", ())),
        )
        for event in _field(span, "events", "events", ())
        if isinstance(event, Mapping)
    ]
    return SpanRecord(
        name=str(_field(span, "name", "name", "")),
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=_json_id(_field(span, "parentSpanId", "parent_span_id"), 8),
        start_time_ns=start_time_ns,
        end_time_ns=end_time_ns,
        status_code=_json_status_code(_field(status, "code", "code", 0)),
        status_message=str(_field(status, "message", "message", "")),
        attributes=_json_attributes(_field(span, "attributes", "attributes", ())),
        events=events or (),
        resource=resource,
    )


def records_from_json(
    obj: Mapping[str, Any],
    *,
    job_keys: frozenset[str] | None = None,
    unrecognised: collections.Counter[str] | None = None,
    skipped: SkippedSpans | None = None,
) -> tuple[list[SpanRecord], Rejections]:
    """The spans of an OTLP JSON ``ExportTraceServiceRequest``/``TracesData`` object, and those rejected.

    Raises :class:`OtlpDecodeError` when the object does not have the shape of OTLP trace data. A span
    with a malformed field (an id that is not hex, a time that is not an integer, ...) is rejected alone.
    With ``job_keys``, a span carrying none of them is left out and added to ``unrecognised`` (per instrumentation
    scope name) and to ``skipped``, as :func:`records_from_protobuf` does.
    """
    if not isinstance(obj, Mapping):
        raise OtlpDecodeError("OTLP JSON must be an object")
    resource_spans_list = _field(obj, "resourceSpans", "resource_spans", [])
    if not isinstance(resource_spans_list, list):
        raise OtlpDecodeError("resourceSpans must be an array")
    records: list[SpanRecord] = []
    rejected: collections.Counter[str] = collections.Counter()
    try:
        for resource_spans in resource_spans_list:
            resource_obj = _field(resource_spans, "resource", "resource", {})
            resource = _json_attributes(_field(resource_obj, "attributes", "attributes", ()))
            for scope_spans in _field(resource_spans, "scopeSpans", "scope_spans", ()):
                for span in _field(scope_spans, "spans", "spans", ()):
                    try:
                        if not isinstance(span, Mapping):
                            raise _Rejected(MALFORMED)
                        record = _json_span(span, resource)
                        if job_keys is not None and job_keys.isdisjoint(record.attributes):
                            if unrecognised is not None:
                                unrecognised[
                                    str(_field(_field(scope_spans, "scope", "scope", {}), "name", "name", ""))
                                ] += 1
                            if skipped is not None:
                                skipped.add_link(record.trace_id, record.span_id, record.parent_span_id)
                            continue
                        records.append(record)
                    except _Rejected as rejection:
                        rejected[rejection.reason] += 1
                    except (ValueError, TypeError, KeyError, binascii.Error):
                        rejected[MALFORMED] += 1
    except (AttributeError, TypeError) as error:
        raise OtlpDecodeError(f"not OTLP trace data: {error}") from error
    return records, Rejections(rejected)
