"""OTLP in (protobuf and JSON) gives the same records, and so the same rows, as the in-process SDK path."""

from __future__ import annotations

import base64
import copy

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from otlp_payloads import SPEC_EXAMPLE, otlp_json

from otel_datasink.mapping import map_records
from otel_datasink.otlp import (
    INVALID_ID,
    INVALID_TIME,
    NO_END_TIME,
    OtlpDecodeError,
    records_from_json,
    records_from_protobuf,
)
from otel_datasink.profiles import load_profile
from otel_datasink.sdk import from_readable_span

INGESTED_AT = 1_700_000_000_000


def _sdk_spans():
    """Ended SDK spans: a successful job with updates and odd attribute types, a failed child job, a non-job span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orders-etl", "team": "data"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "ingest",
        attributes={
            "job.name": "ingest_orders",
            "job.type": "batch",
            "job.run.attempt": 2,
            "job.run.logical_date": "2026-11-26T00:00:00Z",
            "job.run.type": "backfill",
            "job.records_processed": 1234,
            "dataset.name": "orders",
            "tags": ["a", "b"],
            "ratio": 0.5,
            "flag": True,
            "blob": b"\x00\x01",
        },
    ) as span:
        span.add_event(
            "dataset.update",
            {"dataset.name": "orders", "dataset.records_written": 1234, "dataset.watermark": "2026-11-26T06:00:00Z"},
        )
        span.add_event("dataset.update", {"dataset.name": "orders_daily", "dataset.record_count": 99})
        with tracer.start_as_current_span("child", attributes={"job.name": "load_child"}) as child:
            child.record_exception(ValueError("bad row"), escaped=True)
            child.set_status(Status(StatusCode.ERROR, "load failed"))
        with tracer.start_as_current_span("http GET", attributes={"http.method": "GET"}):
            pass
    provider.shutdown()
    return exporter.get_finished_spans()


def test_sdk_span_and_otlp_span_give_identical_rows():
    spans = _sdk_spans()
    profile = load_profile("default")
    via_sdk = map_records([from_readable_span(s) for s in spans], profile, INGESTED_AT)

    request = encode_spans(spans)
    proto_records, proto_rejected, _ = records_from_protobuf(request.SerializeToString())
    json_records, json_rejected = records_from_json(otlp_json(request))

    assert (proto_rejected, json_rejected) == (0, 0)
    assert len(via_sdk["job_runs"]) == 2 and len(via_sdk["dataset_status"]) == 2
    assert map_records(proto_records, profile, INGESTED_AT) == via_sdk
    assert map_records(json_records, profile, INGESTED_AT) == via_sdk


def _wide_sdk_span():
    """One ended job span past the span limits: 300 attributes (the run's own set last) and 200 updates of 131
    attributes each, made by an SDK whose own limits are raised above them."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        span_limits=SpanLimits(max_span_attributes=1000, max_events=1000, max_event_attributes=1000)
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    attributes = {"job.name": "wide", **{f"extra.{i}": i for i in range(300)}}
    with provider.get_tracer("test").start_as_current_span("wide", attributes=attributes) as span:
        for i in range(200):
            span.add_event("dataset.update", {**{f"note.{j}": j for j in range(130)}, "dataset.name": f"table_{i}"})
        span.set_attributes({"job.records_processed": 7, "dataset.name": "orders"})
    provider.shutdown()
    return exporter.get_finished_spans()


def test_the_span_limits_keep_the_same_attributes_and_events_from_the_sdk_protobuf_and_json():
    spans = _wide_sdk_span()
    profile = load_profile("default")
    via_sdk = map_records([from_readable_span(s) for s in spans], profile, INGESTED_AT)
    request = encode_spans(spans)
    proto_records, _, _ = records_from_protobuf(request.SerializeToString(), job_keys=profile.job_keys)
    json_records, _ = records_from_json(otlp_json(request))

    [run] = via_sdk["job_runs"]
    # The first 128 attributes (job.name, extra.0 ... extra.126), and those the run is read from, wherever they are.
    assert (run["records_processed"], run["dataset"]) == (7, "orders")
    assert {key for key in run["attributes"] if key.startswith("extra.")} == {f"extra.{i}" for i in range(127)}
    assert run["attributes"]["otel_datasink.dropped_attributes_count"] == str(300 - 127)
    # The first 128 updates, with all their attributes (the rows keep none of an event's own, only read a few).
    assert run["attributes"]["otel_datasink.dropped_events_count"] == "72"
    assert [row["dataset"] for row in via_sdk["dataset_status"]] == [f"table_{i}" for i in range(128)]
    # Dropped as the protobuf is decoded, or by the mapping: the same rows either way.
    assert len(proto_records[0].attributes) == 130 and len(proto_records[0].events) == 128
    assert map_records(proto_records, profile, INGESTED_AT) == via_sdk
    assert map_records(json_records, profile, INGESTED_AT) == via_sdk


def test_traces_data_and_snake_case_json_read_like_the_request():
    request = encode_spans(_sdk_spans())
    expected, _, _ = records_from_protobuf(request.SerializeToString())
    traces_data = TracesData.FromString(request.SerializeToString())
    snake = json_format.MessageToDict(request, use_integers_for_enums=True, preserving_proto_field_name=True)
    for resource_spans in snake["resource_spans"]:
        for span in resource_spans["scope_spans"][0]["spans"]:
            for field in ("trace_id", "span_id", "parent_span_id"):
                if field in span:
                    span[field] = base64.b64decode(span[field]).hex()

    assert records_from_protobuf(traces_data.SerializeToString()) == (expected, 0, len(expected))
    assert records_from_json(snake) == (expected, 0)


def test_spans_with_invalid_ids_are_rejected_and_counted():
    request = encode_spans(_sdk_spans())
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].trace_id = b"\x00" * 16
    spans[1].span_id = b"\x01\x02"
    obj = otlp_json(encode_spans(_sdk_spans()))
    json_spans = obj["resourceSpans"][0]["scopeSpans"][0]["spans"]
    json_spans[0]["traceId"] = "not-hex-" * 4
    json_spans[1]["startTimeUnixNano"] = "yesterday"

    records, rejected, _ = records_from_protobuf(request.SerializeToString())
    json_records, json_rejected = records_from_json(obj)

    assert (len(records), rejected, rejected.reasons) == (1, 2, {INVALID_ID: 2})
    assert (len(json_records), json_rejected) == (1, 2)
    assert json_rejected.reasons == {INVALID_ID: 1, INVALID_TIME: 1}  # a bad time is no bad id
    assert json_rejected.describe() == f"1 span(s) {INVALID_ID}; 1 span(s) {INVALID_TIME}"


def test_a_span_without_an_end_time_is_rejected_as_such_not_read_as_started():
    request = encode_spans(_sdk_spans())
    request.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = 0
    obj = otlp_json(encode_spans(_sdk_spans()))
    json_spans = obj["resourceSpans"][0]["scopeSpans"][0]["spans"]
    json_spans[0]["endTimeUnixNano"] = "0"
    del json_spans[1]["endTimeUnixNano"]

    records, rejected, _ = records_from_protobuf(request.SerializeToString())
    json_records, json_rejected = records_from_json(obj)

    assert (len(records), rejected.reasons) == (2, {NO_END_TIME: 1})
    assert (len(json_records), json_rejected.reasons) == (1, {NO_END_TIME: 2})
    assert all(record.end_time_ns for record in records + json_records)


@pytest.mark.parametrize("field", ["startTimeUnixNano", "endTimeUnixNano", "event"])
def test_a_json_time_beyond_fixed64_rejects_its_span_and_the_others_map(field):
    obj = otlp_json(encode_spans(_sdk_spans()))
    json_span = obj["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    huge = "99999999999999999999999999"  # would overflow every timestamp column and the dt partition
    if field == "event":
        json_span.setdefault("events", []).append({"timeUnixNano": huge, "name": "dataset.update"})
    else:
        json_span[field] = huge

    records, rejected = records_from_json(obj)

    assert (len(records), rejected, rejected.reasons) == (2, 1, {INVALID_TIME: 1})  # the other two spans are kept
    assert map_records(records, load_profile("default"))["job_runs"]


def test_spec_shaped_json_is_read_with_every_value_kind():
    (record,), rejected = records_from_json(copy.deepcopy(SPEC_EXAMPLE))

    assert rejected == 0
    assert record.trace_id == 0x5B8EFFF798038103D269B633813FC60C
    assert record.parent_span_id == 0xEEE19B7EC3C1B173
    assert (record.start_time_ns, record.end_time_ns) == (1544712660000000000, 1544712661000000000)
    assert (record.status_code, record.status_message) == (2, "boom")
    assert record.attributes == {
        "job.name": "spark_job",
        "job.run.attempt": 3,
        "ratio": 0.25,
        "ok": False,
        "raw": b"\x00\x01",
        "list": (1, None),
        "map": {"k": "v"},
    }
    assert record.events == [("dataset.update", 1544712660500000000, {"dataset.name": "events"})]
    assert record.resource == {"service.name": "my.service"}


@pytest.mark.parametrize("obj", [[], {"resourceSpans": {}}, {"resourceSpans": [{"scopeSpans": 3}]}])
def test_json_that_is_not_trace_data_raises(obj):
    with pytest.raises(OtlpDecodeError):
        records_from_json(obj)


def test_empty_request_has_no_records():
    assert records_from_protobuf(ExportTraceServiceRequest().SerializeToString()) == ([], 0, 0)
    assert records_from_json({}) == ([], 0)
