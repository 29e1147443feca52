"""Hostile clocks: a time centuries ahead of the receiver's clock cannot pin a run's or a dataset's state, and an OTLP
span without an end time is rejected for that reason, not made a hung run (issue 16, findings 1 and 6).

Through the real parts: ``otel-datasink collector`` as a process fed by the OTLP/HTTP exporter, raw OTLP (protobuf
and JSON) and OpenLineage events over HTTP; ``otel-datasink replay``; the views read with DuckDB
(:func:`otel_datasink.local.connect`). Each scenario has a control (the same runs with sane times) that the
skewed one must answer like.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable

import pytest
from job_spans import HOUR_NS, now_ns, otlp_json
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from test_collector_durability import CollectorProcess
from test_collector_http import get, metric_samples, post

from otel_datasink.cli import main
from otel_datasink.local import connect

SERVICE = "skewed-clock"


def sdk_spans(emit: Callable[[Tracer], None]) -> list[ReadableSpan]:
    """The ended spans ``emit`` makes with a tracer of service ``SERVICE``."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emit(provider.get_tracer("test"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def run(tracer: Tracer, job: str, start_ns: int, end_ns: int, *, failed: bool = False, updates=()) -> None:
    """One job span from ``start_ns`` to ``end_ns``; ``updates``: (time, attributes) of its dataset.update events."""
    span = tracer.start_span(job, start_time=start_ns, attributes={"job.name": job})
    for time_ns, attributes in updates:
        span.add_event("dataset.update", attributes, timestamp=time_ns)
    if failed:
        span.set_status(Status(StatusCode.ERROR, f"{job} broke"))
    span.end(end_time=end_ns)


def query(location: str, sql: str) -> list[dict]:
    with connect(location) as con:
        relation = con.sql(sql)
        return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


@pytest.fixture
def collector(local_location, tmp_path):
    process = CollectorProcess(local_location, tmp_path / "spool", tmp_path / "log", "--flush-age", "3600")
    yield process
    if process.process.poll() is None:
        process.kill()


def stop(collector: CollectorProcess) -> None:
    """SIGTERM (the open batch is written); the collector exits 0."""
    collector.process.send_signal(signal.SIGTERM)
    assert collector.process.wait(timeout=20) == 0, collector.log.read_text()


def test_an_otlp_span_without_an_end_time_is_rejected_for_that_reason_not_made_a_hung_run(collector, local_location):
    n = now_ns()

    def started_and_finished(tracer: Tracer) -> None:
        run(tracer, "never_ends", n - 2 * HOUR_NS, n - HOUR_NS)
        run(tracer, "finished", n - 2 * HOUR_NS, n - HOUR_NS)

    request = encode_spans(sdk_spans(started_and_finished))
    request.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = 0
    status, _, answer = post(collector.port, request.SerializeToString())
    partial = ExportTraceServiceResponse.FromString(answer).partial_success

    body = otlp_json(encode_spans(sdk_spans(started_and_finished)))
    json_spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    json_spans[0]["endTimeUnixNano"] = "0"
    json_spans[1]["startTimeUnixNano"] = "yesterday"
    json_status, _, json_answer = post(collector.port, json.dumps(body).encode(), "application/json")
    samples = metric_samples(get(collector.port, "/metrics")[1])
    stop(collector)

    assert (status, partial.rejected_spans, partial.error_message) == (200, 1, "1 span(s) without an end time")
    assert json_status == 200
    assert json.loads(json_answer)["partialSuccess"] == {
        "rejectedSpans": "2",
        "errorMessage": "1 span(s) without an end time; 1 span(s) with a time that is not a fixed64 count of "
        "nanoseconds",
    }
    assert samples["otel_datasink_collector_rejected_spans_total"] == 3
    assert query(local_location, "SELECT job_name, status FROM job_runs") == [
        {"job_name": "finished", "status": "SUCCESS"}
    ]
    assert query(local_location, "SELECT * FROM hung_runs") == []


def test_replay_skips_a_span_without_an_end_time_and_says_why(local_location, tmp_path, capsys):
    n = now_ns()
    body = otlp_json(encode_spans(sdk_spans(lambda tracer: run(tracer, "never_ends", n - 2 * HOUR_NS, n))))
    del body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["endTimeUnixNano"]
    replayed = tmp_path / "traces.jsonl"
    replayed.write_text(json.dumps(body) + "\n")

    assert main(["replay", "--location", local_location, "--no-progress", str(replayed)]) == 0
    out = capsys.readouterr().out

    assert "; 1 span(s) without an end time skipped;" in out
    assert not os.path.exists(os.path.join(local_location, "job_runs"))
