"""``otel-datasink collector`` as a process: acknowledged spans survive SIGKILL, SIGTERM flushes and exits 0."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from test_collector_http import job_spans, rows


class CollectorProcess:
    """``python -m otel_datasink.cli collector`` on a free port, HTTP only; its log goes to ``log``."""

    def __init__(self, location: str, spool: Path, log: Path, *flags: str) -> None:
        self.port = free_port()
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "otel_datasink.cli", "collector", "--location", location]
                + ["--http", f"127.0.0.1:{self.port}", "--grpc", "none", "--spool-dir", str(spool), *flags],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while not self._healthy():
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "collector did not start"
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def export(self, count: int) -> set[str]:
        """Sends ``count`` job spans with the real OTLP/HTTP exporter; returns their span ids once acknowledged."""
        spans = job_spans(count, with_noise=False)
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{self.port}/v1/traces", timeout=10)
        assert exporter.export(spans).name == "SUCCESS"
        exporter.shutdown()
        return {f"{span.context.span_id:016x}" for span in spans}


def test_acknowledged_spans_survive_sigkill_and_a_torn_frame_and_are_written_on_restart(local_location, tmp_path):
    spool = tmp_path / "spool"
    first = CollectorProcess(local_location, spool, tmp_path / "log", "--flush-age", "3600")
    sent = first.export(5) | first.export(7)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    assert rows(local_location, timeout=0) == []  # rows were only in the spool
    (segment,) = spool.glob("*.seg")
    with open(segment, "ab") as torn:  # a request cut off mid-append by the crash, never acknowledged
        torn.write(b"ODS1\x01\x00\x01\x00\x00partial")

    second = CollectorProcess(local_location, spool, tmp_path / "log", "--flush-age", "0.2")
    try:
        written = {row["span_id"] for row in rows(local_location, expect=len(sent), timeout=10)}
        sent |= second.export(2)
        written |= {row["span_id"] for row in rows(local_location, expect=len(sent), timeout=10)}
    finally:
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(timeout=15) == 0, (tmp_path / "log").read_text()

    assert written == sent
    assert not list(spool.glob("*.seg"))


def test_sigterm_flushes_the_open_batch_and_exits_0_within_the_bound(local_location, tmp_path):
    spool = tmp_path / "spool"
    collector = CollectorProcess(
        local_location, spool, tmp_path / "log", "--flush-age", "3600", "--shutdown-timeout", "5"
    )
    sent = collector.export(4)
    started = time.monotonic()
    collector.process.send_signal(signal.SIGTERM)
    code = collector.process.wait(timeout=15)
    elapsed = time.monotonic() - started

    assert code == 0, (tmp_path / "log").read_text()
    assert elapsed < 5
    assert {row["span_id"] for row in rows(local_location, timeout=0)} == sent
    assert not list(spool.glob("*.seg"))
