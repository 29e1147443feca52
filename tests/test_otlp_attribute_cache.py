"""The cached attribute decode of OTLP protobuf reads every value as a full parse with OTLP's messages does.

:func:`~otel_datasink.otlp.records_from_protobuf` keeps attribute lists encoded and decodes each ``KeyValue``
through a bounded cache keyed by its bytes. These tests compare its records with an independent reading of the
same request (``ExportTraceServiceRequest.FromString`` plus a plain ``AnyValue`` conversion written here, and
the JSON path), check that cached values are never shared mutable objects, that a malformed attribute anywhere
the collector reads fails the whole request (400 from the real collector, which keeps serving; a skipped non-job
span's attributes are never read), and that more distinct values than the cache holds still decode right.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from collectors import post, rows, start_collector
from google.protobuf.internal.encoder import _VarintBytes
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from otlp_payloads import otlp_json

from otel_datasink import otlp
from otel_datasink.config import SpanLimits
from otel_datasink.mapping import SpanRecord
from otel_datasink.otlp import records_from_json, records_from_protobuf

# --- an independent reading of the same request ----------------------------------------------------


def plain(any_value: AnyValue) -> Any:
    """An AnyValue as the SDK would hold it: scalars, arrays as tuples, key-value lists as dicts, unset as None."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(plain(item) for item in any_value.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind)


def plain_attributes(key_values) -> dict[str, Any]:
    return {kv.key: plain(kv.value) for kv in key_values}


def typed(value: Any) -> Any:
    """A value with its type spelled out, so that True != 1, -0.0 != 0.0, NaN == NaN and dict order counts."""
    if isinstance(value, dict):
        return ("dict", [(key, typed(item)) for key, item in value.items()])
    if isinstance(value, tuple):
        return ("tuple", [typed(item) for item in value])
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


def expected_spans(body: bytes) -> list[Any]:
    """(attributes, events, resource) of every span, in order, read with OTLP's own messages."""
    request = ExportTraceServiceRequest.FromString(body)
    return [
        typed_span(
            plain_attributes(span.attributes),
            [(e.name, e.time_unix_nano, plain_attributes(e.attributes)) for e in span.events],
            plain_attributes(resource_spans.resource.attributes),
        )
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def typed_span(attributes, events, resource) -> Any:
    return (
        typed(attributes),
        [(name, time, typed(event_attributes)) for name, time, event_attributes in events],
        typed(resource),
    )


def read_spans(records: list[SpanRecord]) -> list[Any]:
    return [typed_span(r.attributes, list(r.events), r.resource) for r in records]


# --- requests built from OTLP messages -------------------------------------------------------------


def kv(key: str, value: AnyValue | None = None) -> KeyValue:
    return KeyValue(key=key) if value is None else KeyValue(key=key, value=value)


def array(*values: AnyValue) -> AnyValue:
    return AnyValue(array_value=ArrayValue(values=list(values)))


def kvlist(*key_values: KeyValue) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(values=list(key_values)))


def S(value: str) -> AnyValue:  # short builders keep the table of values below readable
    return AnyValue(string_value=value)


def B(value: bool) -> AnyValue:
    return AnyValue(bool_value=value)


def Int(value: int) -> AnyValue:
    return AnyValue(int_value=value)


def D(value: float) -> AnyValue:
    return AnyValue(double_value=value)


def BY(value: bytes) -> AnyValue:
    return AnyValue(bytes_value=value)


EVERY_KIND = [
    kv("string", S("orders")),
    kv("empty string", S("")),
    kv("unicode", S("Zürich ✓ 東京")),
    kv("string at the cache's byte limit", S("s" * 230)),
    kv("long string", S("L" * 300)),
    kv("true", B(True)),
    kv("false", B(False)),
    kv("zero", Int(0)),
    kv("one", Int(1)),
    kv("minus one", Int(-1)),
    kv("int64 max", Int(2**63 - 1)),
    kv("int64 min", Int(-(2**63))),
    kv("double", D(0.5)),
    kv("double one", D(1.0)),
    kv("negative zero", D(-0.0)),
    kv("nan", D(math.nan)),
    kv("inf", D(math.inf)),
    kv("minus inf", D(-math.inf)),
    kv("tiny", D(5e-324)),
    kv("bytes", BY(b"\x00\x01\xff")),
    kv("empty bytes", BY(b"")),
    kv("long bytes", BY(bytes(range(256)) * 2)),
    kv(
        "mixed array",
        array(S("a"), B(True), Int(-7), D(2.5), BY(b"\x02"), AnyValue(), array(Int(1)), kvlist(kv("k", S("v")))),
    ),
    kv("empty array", array()),
    kv(
        "nested kvlist",
        kvlist(
            kv("a", Int(1)), kv("b", kvlist(kv("c", array(Int(1), S("x"))), kv("d", kvlist()))), kv("e", AnyValue())
        ),
    ),
    kv("empty kvlist", kvlist()),
    kv("empty value", AnyValue()),
    kv("no value"),
    kv("", S("empty key")),
    kv("repeated key", S("first")),
    kv("repeated key", Int(2)),  # the last one wins, as in a dict built from the list
]


def span(job: str | None, attributes: list[KeyValue], index: int, events: list[Span.Event] = ()) -> Span:
    own = [kv("job.name", S(job)), kv("dataset.name", S("orders"))] if job else [kv("http.method", S("GET"))]
    return Span(
        trace_id=(0xABC0 + index).to_bytes(16, "big"),
        span_id=(index + 1).to_bytes(8, "big"),
        name=f"span {index}",
        start_time_unix_nano=1_764_000_000_000_000_000 + index,
        end_time_unix_nano=1_764_000_001_000_000_000 + index,
        attributes=own + attributes,
        events=list(events),
    )


def request(
    resources: int, spans: int, attributes: list[KeyValue], *, prefix: str = "job"
) -> ExportTraceServiceRequest:
    """``resources`` resource spans of ``spans`` job spans each, the attributes on spans, events and resources."""
    message = ExportTraceServiceRequest()
    for r in range(resources):
        resource_spans = message.resource_spans.add()
        resource_spans.resource.attributes.extend([kv("service.name", S(f"svc-{r}")), *attributes])
        scope_spans = resource_spans.scope_spans.add()
        for s in range(spans):
            index = r * spans + s
            event = Span.Event(name="dataset.update", time_unix_nano=1_764_000_000_500_000_000, attributes=attributes)
            scope_spans.spans.append(span(f"{prefix}_{index}", attributes, index, [event, Span.Event(name="bare")]))
    return message


# --- 1. the cached decode reads what OTLP's messages read ----------------------------------------


def test_every_value_kind_reads_as_a_full_parse_and_the_json_path_read_it():
    message = request(2, 3, EVERY_KIND)
    body = message.SerializeToString()
    # protobuf's JSON mapping leaves out an empty key, and the JSON path then drops that attribute (OTel
    # attribute keys must not be empty anyway): the JSON comparison is made without it.
    json_message = request(2, 3, [a for a in EVERY_KIND if a.key])

    records, rejected, spans = records_from_protobuf(body)
    json_records, json_rejected = records_from_json(otlp_json(json_message))
    without_empty_key = records_from_protobuf(json_message.SerializeToString())[0]

    assert (rejected, spans, len(records)) == (0, 6, 6)
    assert read_spans(records) == expected_spans(body)
    assert json_rejected == 0 and read_spans(json_records) == read_spans(without_empty_key)
    first = records[0]
    assert first.attributes["int64 min"] == -(2**63) and first.attributes["int64 max"] == 2**63 - 1
    assert math.isnan(first.attributes["nan"]) and first.attributes["minus inf"] == -math.inf
    assert first.attributes["mixed array"] == ("a", True, -7, 2.5, b"\x02", None, (1,), {"k": "v"})
    assert first.attributes["nested kvlist"] == {"a": 1, "b": {"c": (1, "x"), "d": {}}, "e": None}
    assert (first.attributes["empty value"], first.attributes["no value"], first.attributes["repeated key"]) == (
        None,
        None,
        2,
    )
    assert first.events[1] == ("bare", 0, {})


def test_attributes_repeated_across_many_spans_and_requests_read_the_same_every_time():
    # The same KeyValue bytes on 3 x 40 spans (and their events and resources) per request, in 3 requests:
    # all but the first reading of each come from the cache.
    bodies = [request(3, 40, EVERY_KIND, prefix=f"req{n}").SerializeToString() for n in range(3)]

    for body in bodies:
        records, rejected, _ = records_from_protobuf(body)
        assert rejected == 0 and len(records) == 120
        assert read_spans(records) == expected_spans(body)


def test_mutating_a_records_values_changes_no_other_record():
    shared = [
        kv("job.tags", array(S("a"), kvlist(kv("inner", S("x"))))),
        kv("job.config", kvlist(kv("k", S("v")), kv("nested", kvlist(kv("n", Int(1)))))),
        kv("plain", S("same")),
    ]
    body = request(2, 2, shared).SerializeToString()
    first, *others = records_from_protobuf(body)[0]
    # A record of another resource, and of another request with the same bytes.
    others = [others[-1], *records_from_protobuf(body)[0]]

    first.attributes["job.config"]["k"] = "changed"
    first.attributes["job.config"]["nested"]["n"] = 99
    first.attributes["job.tags"][1]["inner"] = "changed"
    first.attributes["plain"] = "changed"
    first.events[0][2]["job.config"]["k"] = "changed"
    first.events[0][2]["job.tags"][1]["inner"] = "changed"
    first.resource["job.config"]["k"] = "changed"
    first.resource["job.tags"][1]["inner"] = "changed"

    for other in others:
        for attributes in (other.attributes, other.events[0][2], other.resource):
            assert attributes["job.config"] == {"k": "v", "nested": {"n": 1}}
            assert attributes["job.tags"] == ("a", {"inner": "x"})
            assert attributes["plain"] == "same"
    assert read_spans(records_from_protobuf(body)[0]) == expected_spans(body)


def _nested_key_value(depth: int) -> bytes:
    """An encoded KeyValue ``deep`` whose value is ``depth`` key-value lists, one inside the other."""

    def field(number: int, payload: bytes) -> bytes:
        return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload

    value = field(1, b"leaf")  # AnyValue.string_value
    for _ in range(depth):
        value = field(6, field(1, field(1, b"k") + field(2, value)))  # kvlist_value.values[0] = {k: value}
    return field(1, b"deep") + field(2, value)


@pytest.mark.xfail(
    strict=True,
    reason="otlp.py decodes each KeyValue on its own, so protobuf's nesting limit (100 messages) counts from the "
    "KeyValue, not from the request: a span attribute nested 32-33 levels is accepted although "
    "ExportTraceServiceRequest.FromString rejects the same body (records_from_protobuf's docstring promises "
    "DecodeError 'as parsing it with OTLP's own messages would'). Harmless leniency, but a divergence.",
)
def test_an_attribute_nested_past_protobufs_depth_limit_fails_as_in_a_full_parse():
    message = ExportTraceServiceRequest()
    message.resource_spans.add().scope_spans.add().spans.append(span("deep_job", [], 0))
    # Appending a field to the encoded span adds one more attribute to it (protobuf merges repeated fields).
    raw_span = message.resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    raw_span += b"\x4a" + _VarintBytes(len(_nested_key_value(32))) + _nested_key_value(32)  # field 9: attributes
    scope = b"\x12" + _VarintBytes(len(raw_span)) + raw_span
    resource_spans = b"\x12" + _VarintBytes(len(scope)) + scope
    body = b"\x0a" + _VarintBytes(len(resource_spans)) + resource_spans
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(body)

    with pytest.raises(DecodeError):
        records_from_protobuf(body)


# --- 2. a malformed attribute fails the request, and the collector keeps serving ------------------

POISON = kv("poison", S("PPPPPPPP"))
POISON_BYTES = POISON.SerializeToString()  # b"\n\x06poison\x12\n\n\x08PPPPPPPP"
CORRUPTIONS = {
    # Each the same length as POISON_BYTES, so every enclosing length stays right.
    "value longer than the KeyValue": POISON_BYTES.replace(b"\x12\n", b"\x12\x0b"),
    "invalid wire type 7": POISON_BYTES.replace(b"\x12\n", b"\x17\n"),
    "bad UTF-8 in a string": POISON_BYTES.replace(b"PPPPPPPP", b"\xff" * 8),
}
PLACES = ["non-job span", "job span", "event of a job span", "event of a non-job span", "resource"]
UNREAD = ("non-job span", "event of a non-job span")
"""Places the collector never decodes: a span it skips as no job span's (the fast path, ``job_keys``)."""


def poisoned_request(place: str | None, job: str) -> ExportTraceServiceRequest:
    """A job span and a non-job span (each with an event); ``place`` says which attribute list gets POISON."""
    poison = {place: [POISON]} if place else {}
    message = ExportTraceServiceRequest()
    resource_spans = message.resource_spans.add()
    resource_spans.resource.attributes.extend([kv("service.name", S("svc")), *poison.get("resource", [])])
    spans = resource_spans.scope_spans.add().spans

    def event(where: str) -> Span.Event:
        return Span.Event(name="dataset.update", attributes=[kv("dataset.name", S("orders")), *poison.get(where, [])])

    spans.append(span(job, poison.get("job span", []), 0, [event("event of a job span")]))
    spans.append(span(None, poison.get("non-job span", []), 1, [event("event of a non-job span")]))
    return message


def corrupted(place: str, corruption: str, job: str) -> bytes:
    body = poisoned_request(place, job).SerializeToString()
    assert body.count(POISON_BYTES) == 1
    return body.replace(POISON_BYTES, CORRUPTIONS[corruption])


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("place", PLACES)
def test_a_malformed_attribute_anywhere_read_fails_decoding_as_a_full_parse_does(place, corruption):
    body = corrupted(place, corruption, "bad_job")
    good = poisoned_request(place, "good_job").SerializeToString()

    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(body)
    with pytest.raises(DecodeError):
        records_from_protobuf(body)
    job_keys = frozenset({"job.name"})  # the collector's pre-filter of non-job spans
    if place in UNREAD:  # never decoded, so never failing: the request's job span is read as without the poison
        records = records_from_protobuf(body, job_keys=job_keys)[0]
        assert read_spans(records) == expected_spans(poisoned_request(place, "bad_job").SerializeToString())[:1]
    else:
        with pytest.raises(DecodeError):
            records_from_protobuf(body, job_keys=job_keys)
    assert read_spans(records_from_protobuf(good)[0]) == expected_spans(good)


@pytest.mark.parametrize("place", PLACES)
def test_a_malformed_attribute_read_gets_400_one_unread_200_and_the_next_good_request_is_written(
    local_location, tmp_path, place
):
    served = []
    with start_collector(local_location, tmp_path / "spool") as collector:
        for n, corruption in enumerate(sorted(CORRUPTIONS)):
            status, _, _ = post(collector.http_port, corrupted(place, corruption, f"bad_{n}"))
            good = poisoned_request(None, f"good_{n}").SerializeToString()
            served.append((status, post(collector.http_port, good)[0]))
        runs = rows(local_location, expect=len(CORRUPTIONS) * (2 if place in UNREAD else 1))

    if place in UNREAD:  # the collector never reads a skipped span's attributes: the request is taken
        assert served == [(200, 200)] * len(CORRUPTIONS)
        expected = [f"{kind}_{n}" for kind in ("bad", "good") for n in range(len(CORRUPTIONS))]
    else:
        assert served == [(400, 200)] * len(CORRUPTIONS)
        # The bad requests' own job spans were not written: a request is taken whole or not at all.
        expected = [f"good_{n}" for n in range(len(CORRUPTIONS))]
    assert sorted(r["job_name"] for r in runs) == expected


# --- 3. more distinct values than the cache holds ------------------------------------------------


def test_more_distinct_values_than_the_cache_holds_still_read_right():
    run = uuid.uuid4().hex  # values no other test put in the cache
    distinct = 40_000
    assert distinct > otlp._Decoded.max_entries
    message = ExportTraceServiceRequest()
    resource_spans = message.resource_spans.add()
    spans = resource_spans.scope_spans.add().spans
    per_span = 1_000
    for s in range(distinct // per_span):
        values = [
            kv(f"a{i % 3}_{i}", [S(f"{run}-{i}"), Int(i - 20_000), D(i / 7)][i % 3])
            for i in range(s * per_span, (s + 1) * per_span)
        ]
        spans.append(span(f"job_{s}", values, s))
    body = message.SerializeToString()

    unlimited = SpanLimits(attributes=2 * per_span)  # the cache is under test here, not the attribute limit
    for _ in range(2):  # the second time round the cache was cleared and refilled by the first
        records, rejected, _ = records_from_protobuf(body, limits=unlimited)
        assert rejected == 0 and len(records) == 40
        assert records[0].attributes["a0_0"] == f"{run}-0"
        assert records[0].attributes["a1_1"] == -19_999
        assert records[-1].attributes["a0_39999"] == f"{run}-39999"
        assert records[-1].attributes["a2_39998"] == 39_998 / 7
        assert read_spans(records) == expected_spans(body)
        # The cache stays within its bound (otherwise a long-running collector's memory grows without limit).
        assert len(otlp._decoded.__self__) <= otlp._Decoded.max_entries
