"""The collector under slow, idle, oversized, unauthenticated and misdirected clients: real sockets on 127.0.0.1.

Timeouts are a fraction of a second here (settings), so every test takes a few seconds at most. Memory is
measured on a collector in its own process (``/proc/<pid>/status``), where nothing else of the tests counts.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import logging
import random
import select
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from collectors import EXPORT, TOKEN, CollectorProcess, connect, get, head, metric, post, start_collector
from network import free_port
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_payloads import good_request, job_spans

from otel_datasink.collector.server import _GC_THRESHOLD, BackgroundCollector
from otel_datasink.collector.settings import CollectorSettings
from otel_datasink.config import Options

AUTH = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUTS = {"header_timeout": 0.5, "body_timeout": 0.5, "idle_timeout": 1.0}


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the collector closed the connection within ``seconds``, and what it sent before."""
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return True, received
            if not chunk:
                return True, received
            received += chunk
    return False, received


@pytest.fixture
def collector(local_location, tmp_path):
    running = start_collector(local_location, tmp_path / "spool", token=TOKEN, **TIMEOUTS)
    yield running
    running.stop()


def test_idle_slowloris_and_slow_body_connections_are_closed_while_a_normal_client_is_served(collector):
    port = collector.http_port
    idle = [connect(port) for _ in range(20)]
    slowloris = [connect(port) for _ in range(20)]
    slow_body = [connect(port) for _ in range(20)]
    for sock in slow_body:
        sock.sendall(head(10_000) + b"x")
    started = time.monotonic()
    # Trickle a byte per connection every 0.1 s: a timer that restarted on each byte would never fire.
    open_ones = {*slowloris, *slow_body}
    partial = head(0)
    for step in range(8):
        for sock in list(open_ones):
            if select.select([sock], [], [], 0)[0]:  # answered (408): more bytes would draw a reset, losing it
                open_ones.discard(sock)
                continue
            with contextlib.suppress(OSError):
                sock.sendall(partial[step : step + 1] if sock in slowloris else b"x")
        time.sleep(0.1)
    assert post(port, good_request(1), **AUTH)[0] == 200  # served meanwhile
    results = {
        name: [closed_within(s, 3.0) for s in socks]
        for name, socks in [("idle", idle), ("slowloris", slowloris), ("slow body", slow_body)]
    }
    elapsed = time.monotonic() - started

    assert all(closed for outcomes in results.values() for closed, _ in outcomes)
    assert all(answer.startswith(b"HTTP/1.1 408") for _, answer in results["slowloris"])
    assert all(answer.startswith(b"HTTP/1.1 408") for _, answer in results["slow body"])
    assert elapsed < 8.0  # 0.5-1 s timeouts (+2 s lingering for the bodies), not the minute they held before
    assert metric(port, 'otel_datasink_collector_timeouts_total{phase="header"}') == 20
    assert metric(port, 'otel_datasink_collector_timeouts_total{phase="body"}') == 20
    assert post(port, good_request(1), **AUTH)[0] == 200
    for sock in idle + slowloris + slow_body:
        sock.close()


def test_connections_past_the_cap_are_refused_with_one_log_line_and_served_once_others_close(
    local_location, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="otel_datasink")
    timeouts = {**TIMEOUTS, "idle_timeout": 2.0}  # the ten held ones stay open until the others are counted
    running = start_collector(local_location, tmp_path / "spool", max_connections=10, **timeouts)
    try:
        port = running.http_port
        held = [connect(port) for _ in range(40)]
        deadline = time.monotonic() + 3
        while running.metrics.connections_refused < 30 and time.monotonic() < deadline:  # /metrics is refused too
            time.sleep(0.05)
        answers = [closed_within(sock, 0.05) for sock in held]
        refused = [answer for closed, answer in answers if closed]
        time.sleep(2.0)  # the idle ones time out
        status = post(port, good_request(1))[0]
        refused_total = metric(port, "otel_datasink_collector_connections_refused_total")
    finally:
        running.stop()
        for sock in held:
            sock.close()

    assert len(refused) == 30 and all(a in (b"", b"HTTP/1.1 503") or a.startswith(b"HTTP/1.1 503") for a in refused)
    assert refused_total == 30
    assert status == 200
    assert len([r for r in caplog.records if "connection limit (10) reached" in r.getMessage()]) == 1


def test_more_connections_than_open_files_lock_nobody_out_and_log_a_few_lines(tmp_path):
    # ulimit -n 256 and the default cap of 1000: the cap is lowered below the limit, so accept() never fails.
    with CollectorProcess.in_folder(tmp_path, "--idle-timeout", "1", nofile=256) as collector:
        held = []
        for _ in range(300):
            held.append(connect(collector.port))
        # Waits on the collector, not on time (it accepts later on a loaded machine): the cap is reached...
        deadline = time.monotonic() + 30
        while "connection limit (128) reached" not in collector.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        for sock in held:
            sock.close()
        # ...and once the held connections are gone, a new client is served (refused only while they close).
        status = None
        while status != 200 and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status = post(collector.port, good_request(1))[0]
            time.sleep(0.05)
        text = collector.log.read_text()

    assert status == 200
    assert "ulimit -n" in text and "at most 128 OTLP/HTTP connections" in text
    assert text.count("connection limit (128) reached") == 1
    assert "out of system resource" not in text and "Traceback" not in text
    assert len(text.splitlines()) < 20


def test_concurrent_big_unauthenticated_bodies_are_refused_without_holding_them(tmp_path):
    body = b"\0" * (15 * 1024 * 1024)
    with CollectorProcess.in_folder(tmp_path, "--token", TOKEN) as collector:
        before = collector.rss_mib()
        statuses = []

        def send() -> None:
            with contextlib.suppress(OSError):  # the collector may close before the last byte is sent
                statuses.append(post(collector.port, body, Authorization="Bearer nope")[0])

        threads = [threading.Thread(target=send) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        grown = collector.rss_mib("VmHWM") - before

    assert statuses and set(statuses) == {401}
    assert grown < 100, f"{grown:.0f} MiB"  # 30 x 15 MiB = 450 MiB if the bodies were read


def test_held_big_bodies_cost_at_most_the_inflight_budget(tmp_path):
    # No token: 20 clients send all but the last byte of a 15 MiB body and hold it. With a 32 MiB budget two of
    # them are received; the others get 503 from their headers (300 MiB resident before, and kept).
    size = 15 * 1024 * 1024
    with CollectorProcess.in_folder(tmp_path, "--max-inflight-bytes", str(32 * 1024 * 1024)) as collector:
        before = collector.rss_mib()
        sockets = [connect(collector.port) for _ in range(20)]
        answers = []

        def send(sock: socket.socket) -> None:
            with contextlib.suppress(OSError):  # a refused one is closed before it sent it all
                sock.sendall(head(size) + b"\0" * (size - 1))
            answers.append(closed_within(sock, 0.5)[1][:12])

        threads = [threading.Thread(target=send, args=(sock,)) for sock in sockets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        held = metric(collector.port, "otel_datasink_collector_inflight_bytes")
        refused = metric(collector.port, 'otel_datasink_collector_requests_total{protocol="http",status="503"}')
        grown = collector.rss_mib("VmHWM") - before
        for sock in sockets:
            sock.close()

    assert refused >= 16 and len(answers) == 20
    assert held <= 32 * 1024 * 1024
    assert grown < 100, f"{grown:.0f} MiB"


def test_bodies_past_the_inflight_budget_get_503_before_they_are_read(local_location, tmp_path):
    running = start_collector(
        local_location, tmp_path / "spool", max_body_bytes=1024 * 1024, max_inflight_bytes=2 * 1024 * 1024
    )
    try:
        port = running.http_port
        # Two bodies of 1 MiB being received hold the whole budget...
        holding = [connect(port) for _ in range(2)]
        for sock in holding:
            sock.sendall(head(1024 * 1024) + b"\n")
        time.sleep(0.2)
        in_flight = metric(port, "otel_datasink_collector_inflight_bytes")
        # ...so the next ones are answered 503 at once, from their headers.
        status, headers, _ = post(port, b"\0" * 1024 * 1024)
        small_status = post(port, b"\0" * 2048)[0]
        for sock in holding:
            sock.close()
        time.sleep(0.2)
        after = metric(port, "otel_datasink_collector_inflight_bytes")
        served = post(port, good_request(1))[0]
    finally:
        running.stop()

    assert in_flight == 2 * 1024 * 1024
    assert status == 503 and int(headers["Retry-After"]) > 0
    assert small_status == 503
    assert after == 0
    assert served == 200


def test_grpc_calls_without_the_token_are_refused_before_their_message_is_read(tmp_path):
    grpc_port = free_port()
    message = b"\n" + b"\xff\xff\xff\x07" + b"\0" * (15 * 1024 * 1024)
    with CollectorProcess.in_folder(tmp_path, "--token", TOKEN, "--grpc", f"127.0.0.1:{grpc_port}") as collector:
        before = collector.rss_mib()
        codes = []

        def call() -> None:
            options = [("grpc.max_send_message_length", 32 * 1024 * 1024)]
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=options) as channel:
                export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
                try:
                    export(message, timeout=20)
                except grpc.RpcError as error:
                    codes.append(error.code())

        threads = [threading.Thread(target=call) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        grown = collector.rss_mib("VmHWM") - before

    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 30
    # 30 x 15 MiB = 450 MiB if the messages were read (760 MiB before); at most 30 x the 1 MiB window buffered
    # unread (5 MiB seen; 200 MiB when grpcio's BDP probing grew the windows)
    assert grown < 64, f"{grown:.0f} MiB"


def _big_request(spans: int) -> bytes:
    """One request of ``spans`` job spans (copies of a few, each with its own span id)."""
    request = ExportTraceServiceRequest.FromString(good_request(8))
    template = list(request.resource_spans[0].scope_spans[0].spans)
    target = request.resource_spans[0].scope_spans[0].spans
    rng = random.Random(7)
    for i in range(spans - len(template)):
        span = target.add()
        span.CopyFrom(template[i % len(template)])
        span.span_id = rng.randbytes(8)
    return request.SerializeToString()


@contextlib.contextmanager
def _collector_gc() -> Iterator[None]:
    """The collector process's GC thresholds (``serve`` sets them) in this process while the block runs: at
    Python's defaults, full collections of the test process's objects (0.1-0.25 s, whichever thread triggers
    them) would stall the event loop as long, and hide what the collector itself does."""
    thresholds = gc.get_threshold()
    gc.set_threshold(*_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def test_health_keeps_answering_while_a_big_request_is_decoded(local_location, tmp_path):
    body = _big_request(80_000)  # ~8 MiB: ~2 s of decoding, mapping and converting to Arrow
    with _collector_gc(), start_collector(local_location, tmp_path / "spool", flush_age=60.0) as running:
        port = running.http_port
        answers = []
        sender = threading.Thread(target=lambda: answers.append(post(port, body)[0]))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        slowest, served = 0.0, 0
        sent = time.monotonic()
        sender.start()
        while sender.is_alive():
            started = time.monotonic()
            connection.request("GET", "/health")
            connection.getresponse().read()
            slowest = max(slowest, time.monotonic() - started)
            served += 1
            time.sleep(0.01)
        took = time.monotonic() - sent
        connection.close()

    assert answers == [200]
    # Relative to the big request, so that a loaded machine slows both alike. Decoded on the event loop, /health
    # waited for nearly all of it (one answer); converted to Arrow on the loop (or in one call on a thread, which
    # holds the GIL throughout), for a quarter of it (took / slowest: 3.8-4.7); converted off the loop in chunks,
    # 15-40 (the rest: the GC's young collections, parsing the protobuf and spooling the body).
    assert served >= 3 and slowest < took / 5, f"/health: {served} answers, slowest {slowest:.2f}s of {took:.2f}s"


def test_a_non_utf8_authorization_header_is_401_without_a_traceback(collector, caplog):
    with connect(collector.http_port) as sock:
        sock.sendall(head(0).replace(f"Bearer {TOKEN}".encode(), b"Bearer \xff\xfe\xfd"))
        _, answer = closed_within(sock, 1.0)

    assert answer.startswith(b"HTTP/1.1 401")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_a_client_gone_mid_body_is_counted_without_a_traceback(collector, caplog):
    caplog.set_level(logging.INFO)
    for _ in range(3):
        with connect(collector.http_port) as sock:
            sock.sendall(head(100_000) + b"x" * 1000)
            time.sleep(0.05)
    deadline = time.monotonic() + 3
    while metric(collector.http_port, "otel_datasink_collector_client_disconnects_total") < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert len([r for r in caplog.records if "went away" in r.getMessage()]) == 1  # one line for the three


def test_health_shows_the_location_only_to_token_holders(collector, local_location):
    public = get(collector.http_port, "/health")
    connection = http.client.HTTPConnection("127.0.0.1", collector.http_port, timeout=10)
    connection.request("GET", "/health/ready", headers=AUTH)
    response = connection.getresponse()
    private = response.status, json.loads(response.read())
    connection.close()

    assert public[0] == 200 and json.loads(public[1]) == {"status": "ok"}
    assert private[0] == 200 and private[1]["location"] == local_location and private[1]["error"] is None
    assert get(collector.http_port, "/health/live") == (200, '{"status": "ok"}')


def test_health_is_degraded_with_the_reason_when_writes_fail(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("the location is a file, so every write fails")
    settings = CollectorSettings(
        http=("127.0.0.1", 0), grpc=None, spool_dir=tmp_path / "spool", token=TOKEN, flush_rows=1, flush_age=0.2
    )
    # A write gives up (and is retried later) after the location's timeout: short, to see it fail soon.
    running = BackgroundCollector(Options.resolve(str(blocked), timeout=0.3), settings).start()
    try:
        assert post(running.http_port, good_request(1), **AUTH)[0] == 200
        deadline = time.monotonic() + 5
        while (health := get(running.http_port, "/health"))[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = get(running.http_port, "/health/ready")
        live = get(running.http_port, "/health/live")
        connection = http.client.HTTPConnection("127.0.0.1", running.http_port, timeout=10)
        connection.request("GET", "/health", headers=AUTH)
        detailed = json.loads(connection.getresponse().read())
        connection.close()
    finally:
        running.stop(timeout=0.5)

    assert health[0] == 503 and json.loads(health[1])["status"] == "degraded" and json.loads(health[1])["reason"]
    assert str(blocked) not in health[1]
    assert ready[0] == 503
    assert live[0] == 200
    assert detailed["status"] == "degraded" and detailed["error"]


def test_a_grpc_exporter_pointed_at_the_http_port_is_counted_and_told_once_in_the_log(local_location, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="otel_datasink")
    with start_collector(local_location, tmp_path / "spool", grpc=("127.0.0.1", 0)) as running:
        exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{running.http_port}", insecure=True, timeout=1)
        try:
            results = [exporter.export(job_spans(1)).name for _ in range(2)]
        finally:
            exporter.shutdown()
        seen = metric(running.http_port, "otel_datasink_collector_grpc_on_http_port_total")
        grpc_port = running.grpc_port

    lines = [r.getMessage() for r in caplog.records if "gRPC (HTTP/2) client" in r.getMessage()]
    assert results == ["FAILURE", "FAILURE"]
    assert seen >= 1
    assert (
        len(lines) == 1 and f"gRPC port {grpc_port}" in lines[0] and "OTEL_TRACES_EXPORTER=otlp_proto_http" in lines[0]
    )


def test_the_log_names_the_address_actually_bound(local_location, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="otel_datasink")
    with start_collector(local_location, tmp_path / "spool") as running:
        port = running.http_port

    assert f"OTLP/HTTP on http://127.0.0.1:{port}/v1/traces" in caplog.text
