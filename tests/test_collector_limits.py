"""The collector under wide spans and requests that decode to much more than they weigh: the span limits, and the
decoded size counted in the in-flight budget. Real requests on 127.0.0.1, to a collector in its own process where
its memory (measured as in test_collector_hostile, ``/proc/<pid>/status``) or its environment is under test, in
this process otherwise."""

from __future__ import annotations

import functools
import http.client
import threading
import time
from pathlib import Path

import grpc
import pytest
from collectors import CollectorProcess, call, connect, get, head, metric, metric_samples, post, rows, start_collector
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from otlp_payloads import job_spans

from otel_datasink.collector import responses

MIB = 1024 * 1024
DEFAULT_BUDGET_MIB = 256
"""``--max-inflight-bytes``'s default: what the requests of the collector may hold at once, decoded or not."""


def export_until_taken(port: int, body: bytes, *, seconds: float = 120.0) -> int:
    """POSTs ``body`` until it is not answered 503 (as an exporter retries), with a timeout for big requests on a
    loaded machine; its last status."""
    deadline = time.monotonic() + seconds
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=seconds)
        try:
            connection.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        if response.status != 503 or time.monotonic() > deadline:
            return response.status
        time.sleep(0.2)


def wide_span_request(attributes: int, seed: int) -> bytes:
    """One ended job span ``wide_<seed>`` with ``attributes`` more attributes (``k0`` ... = ``v``), encoded."""
    request = ExportTraceServiceRequest()
    span = Span(trace_id=bytes([seed]) * 16, span_id=bytes([seed]) * 8, name="wide")
    span.end_time_unix_nano = time.time_ns()
    span.start_time_unix_nano = span.end_time_unix_nano - 10**9
    job_name = span.attributes.add()
    job_name.key, job_name.value.string_value = "job.name", f"wide_{seed}"
    # Serialized messages concatenated parse as one (repeated fields append): the span with the extra attributes
    # after job.name, encoded once for every request (adding a million in Python took ~2 s a request).
    wide = Span.FromString(span.SerializeToString() + encoded_attributes(attributes))
    request.resource_spans.add().scope_spans.add().spans.append(wide)
    return request.SerializeToString()


@functools.cache
def encoded_attributes(count: int) -> bytes:
    """Span field 9 (``attributes``) ``count`` times: ``KeyValue(key="k<i>", value=AnyValue(string_value="v"))``."""
    keys = (f"k{i}".encode() for i in range(count))
    # tag 9/LEN, KeyValue length; key: tag 1/LEN, length, bytes; value: tag 2/LEN, 3, AnyValue(tag 1/LEN, 1, "v").
    return b"".join(b"J%c\n%c%s\x12\x03\n\x01v" % (len(key) + 7, len(key), key) for key in keys)


def test_four_concurrent_requests_of_a_million_attributes_stay_within_the_memory_budget(tmp_path):
    # The requests: 15 MiB each, within the body limits, 4 at once. Each span keeps 128 attributes as it
    # is decoded, and the budget counts each request's decoding (~60 MiB: 2x its text, 32 bytes per attribute
    # parsed); before, RSS grew by 640-850 MiB (a dict of 1e6 attributes per request, rows freed only after the
    # next request's decoding) and each row held all 1e6 attributes (12.8 MB).
    bodies = [wide_span_request(1_000_000, seed) for seed in range(1, 5)]
    assert all(14 * MIB < len(body) < 16 * MIB for body in bodies)
    with CollectorProcess.in_folder(tmp_path) as collector:
        before = collector.rss_mib()
        statuses: list[int] = []

        def send(body: bytes) -> None:
            statuses.append(export_until_taken(collector.port, body))

        threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        grown = collector.rss_mib("VmHWM") - before
        samples = scrape(collector.port)
    runs = rows(str(tmp_path / "tables"), expect=4)

    assert statuses == [200] * 4
    assert grown < DEFAULT_BUDGET_MIB, f"{grown:.0f} MiB"
    assert sorted(run["job_name"] for run in runs) == ["wide_1", "wide_2", "wide_3", "wide_4"]
    for run in runs:
        # job.name and k0 ... k126 kept (job.name is a column), and the count of the others.
        assert len(run["attributes"]) == 127 + 1
        assert run["attributes"]["k126"] == "v" and "k127" not in run["attributes"]
        assert run["attributes"]["otel_datasink.dropped_attributes_count"] == str(1_000_000 - 127)
    assert samples["otel_datasink_collector_dropped_attributes_total"] == 4 * (1_000_000 - 127)


def scrape(port: int) -> dict[str, float]:
    """The collector's ``GET /metrics``, parsed (read while it runs, looked at after the rows)."""
    return metric_samples(get(port, "/metrics")[1])


def limited_collector(tmp_path: Path, monkeypatch, **limits: int):
    """A collector process with the span limits set by their environment variables (``attributes=10`` ...)."""
    for name, value in limits.items():
        monkeypatch.setenv(f"OTEL_EXPORTER_DATASINK_MAX_{name.upper()}", str(value))
    return CollectorProcess.in_folder(tmp_path)


def export_spans(port: int, make_spans) -> None:
    """Sends the spans ``make_spans(tracer)`` ends with the OTLP/HTTP exporter, from an SDK whose own limits are
    raised far above the collector's."""
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=10_000, max_events=10_000))
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=30)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    make_spans(provider.get_tracer("test"))
    provider.shutdown()


def test_attributes_past_the_limit_are_dropped_and_counted_but_never_those_the_run_is_read_from(tmp_path, monkeypatch):
    def wide(tracer) -> None:
        with tracer.start_as_current_span("wide", attributes={"job.name": "wide"}) as span:
            span.set_attributes({f"note.{i}": i for i in range(50)})
            span.set_attributes({"job.records_processed": 42, "dataset.name": "orders"})  # as a job ends

    with limited_collector(tmp_path, monkeypatch, attributes=10) as collector:
        export_spans(collector.port, wide)
        samples = scrape(collector.port)
    [run] = rows(str(tmp_path / "tables"))
    [update] = rows(str(tmp_path / "tables"), "dataset_status")

    assert (run["records_processed"], run["dataset"], update["dataset"]) == (42, "orders", "orders")
    assert run["attributes"] == {
        **{f"note.{i}": str(i) for i in range(9)},
        "otel_datasink.dropped_attributes_count": "41",
    }
    assert samples["otel_datasink_collector_dropped_attributes_total"] == 41


def test_events_past_the_limit_are_dropped_and_counted(tmp_path, monkeypatch):
    def updates(tracer) -> None:
        with tracer.start_as_current_span("load", attributes={"job.name": "load"}) as span:
            for i in range(200):
                span.add_event("dataset.update", {"dataset.name": f"table_{i}", "dataset.records_written": i})

    with limited_collector(tmp_path, monkeypatch, events=50) as collector:
        export_spans(collector.port, updates)
        samples = scrape(collector.port)
    [run] = rows(str(tmp_path / "tables"))
    written = rows(str(tmp_path / "tables"), "dataset_status", expect=50)

    assert sorted(row["records_written"] for row in written) == list(range(50))
    assert run["attributes"] == {"otel_datasink.dropped_events_count": "150"}
    assert samples["otel_datasink_collector_dropped_events_total"] == 150


def test_long_attribute_values_are_cut_and_counted_and_error_messages_keep_their_length(tmp_path, monkeypatch):
    def failing(tracer) -> None:
        with tracer.start_as_current_span("load", attributes={"job.name": "load"}) as span:
            span.set_attributes({"query": "q" * 5_000, "table": "orders", "rows": list(range(1_000))})
            span.set_status(Status(StatusCode.ERROR, "e" * 5_000))

    with limited_collector(tmp_path, monkeypatch, attribute_length=100) as collector:
        export_spans(collector.port, failing)
        samples = scrape(collector.port)
    [run] = rows(str(tmp_path / "tables"))

    assert run["attributes"]["query"] == "q" * 100
    assert run["attributes"]["rows"] == "[" + ", ".join(map(str, range(1_000)))[:99]
    assert run["attributes"]["table"] == "orders"
    assert run["attributes"]["otel_datasink.truncated_values_count"] == "2"
    assert run["error_message"] == "e" * 5_000
    assert samples["otel_datasink_collector_truncated_values_total"] == 2


def small_spans_request(size: int) -> bytes:
    """Job spans of a few attributes (copies of one, each with its own span id), about ``size`` bytes."""
    request = encode_spans(job_spans(1, with_noise=False))
    spans = request.resource_spans[0].scope_spans[0].spans
    template = spans.pop()
    for index in range(size // (template.ByteSize() + 2)):
        span = spans.add()
        span.CopyFrom(template)
        span.span_id = (index + 1).to_bytes(8, "big")
    return request.SerializeToString()


def test_a_request_whose_decoding_would_pass_the_whole_budget_is_refused_for_good(tmp_path):
    # 1.5 MiB of small job spans decode to ~30 MiB: more than the 8 MiB budget, whatever else is held.
    body = small_spans_request(3 * MIB // 2)
    flags = ("--max-body-bytes", str(4 * MIB), "--max-inflight-bytes", str(8 * MIB))
    with CollectorProcess.in_folder(tmp_path, *flags) as collector:
        status, _, answer = post(collector.port, body)
        held = metric(collector.port, "otel_datasink_collector_inflight_bytes")
    stored = rows(str(tmp_path / "tables"), timeout=0.5)

    assert status == 413
    error = status_pb2.Status.FromString(answer)
    assert error.code == responses.RESOURCE_EXHAUSTED and "max-inflight-bytes" in error.message
    assert held == 0 and stored == []


def test_a_grpc_call_whose_decoding_would_pass_the_whole_budget_gets_resource_exhausted(local_location, tmp_path):
    body = small_spans_request(3 * MIB // 2)
    settings = {"grpc": ("127.0.0.1", 0), "max_body_bytes": 4 * MIB, "max_inflight_bytes": 8 * MIB}
    with start_collector(local_location, tmp_path / "spool", **settings) as running:
        code, _ = call(running.grpc_port, body, token=None)
        small, _ = call(running.grpc_port, encode_spans(job_spans(1)).SerializeToString(), token=None)

    assert (code, small) == (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OK)


def test_a_decoding_that_does_not_fit_in_what_is_left_of_the_budget_gets_503_then_fits_once_it_is_free(
    local_location, tmp_path
):
    # Two bodies of 1 MiB being received hold 2 of the 3 MiB; a 50 KB request, whose decoding is estimated at 48x
    # its size (2.4 MB: it would fit alone), must wait for its share, and gets 503 when it does not come within 2 s.
    running = start_collector(local_location, tmp_path / "spool", max_body_bytes=MIB, max_inflight_bytes=3 * MIB)
    body = small_spans_request(50_000)
    try:
        port = running.http_port
        holding = [connect(port) for _ in range(2)]
        for sock in holding:
            sock.sendall(head(MIB) + b"\n")
        time.sleep(0.2)
        refused, headers, _ = post(port, body)
        for sock in holding:
            sock.close()
        time.sleep(0.2)
        taken = post(port, body)[0]
        held = metric(port, "otel_datasink_collector_inflight_bytes")
    finally:
        running.stop()

    assert refused == 503 and int(headers["Retry-After"]) > 0
    assert taken == 200 and held == 0


@pytest.mark.parametrize("attributes", [128, 129])
def test_a_span_at_the_limit_is_stored_whole_and_one_past_it_says_so(local_location, tmp_path, attributes):
    with start_collector(local_location, tmp_path / "spool") as running:
        assert post(running.http_port, wide_span_request(attributes - 1, 7))[0] == 200
    [run] = rows(local_location)

    assert {key for key in run["attributes"] if key.startswith("k")} == {f"k{i}" for i in range(127)}
    assert run["attributes"].get("otel_datasink.dropped_attributes_count") == (None if attributes == 128 else "1")
