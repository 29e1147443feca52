"""The collector's OTLP/gRPC receiver, driven by the real OTLP/gRPC exporter and by raw gRPC calls."""

from __future__ import annotations

import socket
import time

import grpc
import pytest
from collectors import TOKEN, call, rows, start_collector
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from otlp_payloads import job_spans

from otel_datasink.collector import grpc as grpc_receiver


@pytest.fixture
def collector(local_location, tmp_path):
    running = start_collector(
        local_location, tmp_path / "spool", http=None, grpc=("127.0.0.1", 0), token=TOKEN, max_body_bytes=256 * 1024
    )
    yield running
    running.stop()


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_otlp_grpc_exporter_spans_become_rows(collector, local_location, compression):
    exporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{collector.grpc_port}",
        insecure=True,
        compression=compression,
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    try:
        assert exporter.export(job_spans(2)).name == "SUCCESS"
    finally:
        exporter.shutdown()
    runs = rows(local_location, expect=2)

    assert sorted(r["job_name"] for r in runs) == ["job_0", "job_1"]
    assert {r["service_name"] for r in runs} == {"spark-etl"}


def test_grpc_rejected_spans_get_a_partial_success(collector):
    request = encode_spans(job_spans(2))
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\0" * 16

    code, answer = call(collector.grpc_port, request.SerializeToString())

    assert code == grpc.StatusCode.OK
    assert answer.partial_success.rejected_spans == 1 and answer.partial_success.error_message


BAD_CALLS = {
    "garbage protobuf": (grpc.StatusCode.INVALID_ARGUMENT, b"\xff\xff\xff\xff not protobuf", TOKEN),
    "oversized message": (grpc.StatusCode.RESOURCE_EXHAUSTED, b"\n" + b"\xff\xff\x7f" + b"\0" * 300_000, TOKEN),
    "missing token": (grpc.StatusCode.UNAUTHENTICATED, b"", None),
    "wrong token": (grpc.StatusCode.UNAUTHENTICATED, b"", "nope"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_calls_get_their_status_and_the_next_good_call_is_served(collector, local_location, case):
    status, body, token = BAD_CALLS[case]

    assert call(collector.grpc_port, body, token)[0] == status
    assert call(collector.grpc_port, encode_spans(job_spans(1)).SerializeToString())[0] == grpc.StatusCode.OK
    assert len(rows(local_location, expect=1)) == 1
    assert collector.metrics.requests["grpc", status.name] == 1  # counted as the client saw it


def test_a_backlogged_store_gets_unavailable(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("the location is a file, so every write fails")
    running = start_collector(
        str(blocked), tmp_path / "spool", http=None, grpc=("127.0.0.1", 0), flush_rows=1, max_pending_batches=1
    )
    body = encode_spans(job_spans(1)).SerializeToString()
    try:
        first, _ = call(running.grpc_port, body)
        second, _ = call(running.grpc_port, body)
    finally:
        running.stop(timeout=0.5)

    assert (first, second) == (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE)


def test_a_call_waits_for_its_share_of_the_inflight_budget_then_gets_unavailable(local_location, tmp_path, monkeypatch):
    monkeypatch.setattr(grpc_receiver, "ADMISSION_WAIT_SECONDS", 0.3)
    limit = 256 * 1024
    running = start_collector(
        local_location, tmp_path / "spool", grpc=("127.0.0.1", 0), max_body_bytes=limit, max_inflight_bytes=limit
    )
    body = encode_spans(job_spans(1)).SerializeToString()
    try:
        # An HTTP body being received holds the whole budget: a gRPC call may not read its message meanwhile.
        holder = socket.create_connection(("127.0.0.1", running.http_port))
        holder.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: %d\r\n\r\nx" % limit
        )
        time.sleep(0.2)
        waited = time.monotonic()
        blocked, _ = call(running.grpc_port, body)
        waited = time.monotonic() - waited
        holder.close()
        time.sleep(0.2)
        served, _ = call(running.grpc_port, body)
    finally:
        running.stop()

    assert blocked == grpc.StatusCode.UNAVAILABLE and 0.25 < waited < 2.0
    assert served == grpc.StatusCode.OK
