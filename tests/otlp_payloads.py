"""What OTLP clients send: ended spans of the real OpenTelemetry SDK (as instrumented jobs make them), the OTLP
requests and OTLP JSON they are encoded as, and the OTLP JSON of the specification's example."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode


def job_spans(count: int, *, with_noise: bool = True):
    """Ended SDK spans: ``count`` job runs (one updates a dataset) and, with_noise, a non-job span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "spark-etl"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for i in range(count):
        with tracer.start_as_current_span(f"run {i}", attributes={"job.name": f"job_{i}", "dataset.name": "orders"}):
            pass
    if with_noise:
        with tracer.start_as_current_span("GET /", attributes={"http.method": "GET"}):
            pass
    provider.shutdown()
    return exporter.get_finished_spans()


def checked_spans():
    """Ended SDK spans of one job run whose data-quality checks are ``dataset.check`` events: ``not_null_id``
    passed (a bool) and ``row_count`` failed (written ``"false"``, with actual and expected values)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "validator"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("validate", attributes={"job.name": "validate"}) as span:
        span.add_event("dataset.check", {"dataset.name": "orders", "check.name": "not_null_id", "check.passed": True})
        span.add_event(
            "dataset.check",
            {"dataset.name": "orders", "check.name": "row_count", "check.passed": "false", "check.actual": 12,
             "check.expected": 100.0},
        )  # fmt: skip
    provider.shutdown()
    return exporter.get_finished_spans()


def good_request(count: int = 1) -> bytes:
    """An OTLP/HTTP protobuf request body of :func:`job_spans`."""
    return encode_spans(job_spans(count)).SerializeToString()


def nightly_spans(batch: int):
    """SDK spans of a few job runs of service ``nightly`` (a success with a dataset update, a failure, a non-job
    span), an hour ago plus ``batch`` minutes: what a replay test writes to a file, batch after batch."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "nightly"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("replay-test")
    base = time.time_ns() - 3_600 * 10**9 + batch * 60 * 10**9
    with tracer.start_as_current_span(
        "ingest_orders", attributes={"job.name": "ingest_orders", "dataset.name": "orders"}, start_time=base
    ) as span:
        span.set_attribute("job.records_processed", 1000 + batch)
        span.add_event(
            "dataset.update",
            {"dataset.name": "orders", "dataset.record_count": 5000 + batch},
            timestamp=base + 2 * 10**9,
        )
        with tracer.start_as_current_span("query", start_time=base + 10**9):  # not a job span
            pass
    span = tracer.start_span("build_customers", attributes={"job.name": "build_customers"}, start_time=base)
    span.set_status(Status(StatusCode.ERROR, "upstream missing"))
    span.end(end_time=base + 5 * 10**9)
    provider.shutdown()
    return list(memory.get_finished_spans())


def otlp_json(request: Any) -> dict:
    """OTLP JSON of an encoded request, as an exporter sends it: protobuf's JSON mapping, integer enums, hex ids."""
    obj = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in obj.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        span[field] = base64.b64decode(span[field]).hex()
    return obj


def otlp_json_line(spans) -> str:
    """One line of the OpenTelemetry file exporter's format: a TracesData object in the OTLP JSON encoding."""
    return json.dumps(otlp_json(encode_spans(spans)), separators=(",", ":"))


SPEC_EXAMPLE = {
    # The shape of opentelemetry-proto's examples/trace.json, with job attributes and every AnyValue kind.
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "my.library", "version": "1.0.0"},
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "parentSpanId": "EEE19B7EC3C1B173",
                            "name": "I'm a server span",
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000000",
                            "kind": 2,
                            "status": {"code": 2, "message": "boom"},
                            "attributes": [
                                {"key": "job.name", "value": {"stringValue": "spark_job"}},
                                {"key": "job.run.attempt", "value": {"intValue": "3"}},
                                {"key": "ratio", "value": {"doubleValue": 0.25}},
                                {"key": "ok", "value": {"boolValue": False}},
                                {"key": "raw", "value": {"bytesValue": "AAE="}},
                                {"key": "list", "value": {"arrayValue": {"values": [{"intValue": 1}, {}]}}},
                                {
                                    "key": "map",
                                    "value": {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}},
                                },
                            ],
                            "events": [
                                {
                                    "timeUnixNano": "1544712660500000000",
                                    "name": "dataset.update",
                                    "attributes": [{"key": "dataset.name", "value": {"stringValue": "events"}}],
                                }
                            ],
                            "unknownField": {"ignored": True},
                        }
                    ],
                }
            ],
        }
    ]
}
