"""The collector under test and its clients: started in this process (:func:`start_collector`) or in a process of
its own as a user starts it (:class:`CollectorProcess`, where its memory, its exit or a crash is under test); raw
OTLP/HTTP, OpenLineage and gRPC requests to it, its metrics, and the rows it wrote."""

from __future__ import annotations

import functools
import gzip
import http.client
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import duckdb
import grpc
from command_line import command
from network import free_port
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from otlp_payloads import job_spans
from prometheus_client.parser import text_string_to_metric_families

from otel_datasink.collector.server import BackgroundCollector
from otel_datasink.collector.settings import CollectorSettings
from otel_datasink.config import Options

TOKEN = "s3cret"
TRACES = "/v1/traces"
LINEAGE = "/api/v1/lineage"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
"""The OTLP/gRPC method a trace exporter calls."""


def start_collector(location: str, spool_dir, **settings) -> BackgroundCollector:
    """A collector on free ports (HTTP only unless told), started in this process."""
    values = {"http": ("127.0.0.1", 0), "grpc": None, "spool_dir": spool_dir, "flush_age": 0.2, **settings}
    return BackgroundCollector(Options.resolve(location), CollectorSettings(**values)).start()


class CollectorProcess:
    """``otel-datasink collector`` in a process of its own, started as a user starts it: OTLP/HTTP on a free port
    of 127.0.0.1, gRPC only if ``flags`` say (``--grpc ADDRESS``), its output appended to ``log``.

    Returned once it answers ``/health``; ``nofile`` is its limit of open files (``ulimit -n``). As a context
    manager it is stopped with SIGTERM after the block, which must end it with exit status 0.
    """

    def __init__(self, location: str, spool: Path, log: Path, *flags: str, nofile: int | None = None) -> None:
        self.port = free_port()
        self.log = log
        arguments = ["--location", location, "--http", f"127.0.0.1:{self.port}", "--grpc", "none"]
        limit = None if nofile is None else functools.partial(_limit_open_files, nofile)
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                command("collector", *arguments, "--spool-dir", str(spool), *flags),
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=limit,  # noqa: PLW1509
            )
        self._wait_healthy()

    @classmethod
    def in_folder(cls, folder: Path, *flags: str, nofile: int | None = None) -> CollectorProcess:
        """One whose tables, spool and log are ``folder``'s ``tables``, ``spool`` and ``collector.log``."""
        return cls(str(folder / "tables"), folder / "spool", folder / "collector.log", *flags, nofile=nofile)

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, kind, *_) -> None:
        code = self.stop()
        if kind is None:
            assert code == 0, self.log.read_text()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 30
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"the collector did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            return get(self.port, "/health")[0] == 200
        except OSError:
            return False

    def post(self, count: int) -> tuple[int, set[str]]:
        """POSTs ``count`` job spans as one raw OTLP/HTTP protobuf request (no retry); (status, span ids)."""
        spans = job_spans(count, with_noise=False)
        status, _, _ = post(self.port, encode_spans(spans).SerializeToString())
        return status, {f"{span.context.span_id:016x}" for span in spans}

    def export(self, count: int) -> set[str]:
        """Sends ``count`` job spans with the real OTLP/HTTP exporter; returns their span ids once acknowledged."""
        spans = job_spans(count, with_noise=False)
        exporter = OTLPSpanExporter(endpoint=f"{self.url}{TRACES}", timeout=10)
        assert exporter.export(spans).name == "SUCCESS"
        exporter.shutdown()
        return {f"{span.context.span_id:016x}" for span in spans}

    def metric(self, name: str) -> float:
        """The value of an unlabelled ``otel_datasink_collector_<name>`` metric."""
        return metric(self.port, f"otel_datasink_collector_{name}")

    def rss_mib(self, field: str = "VmRSS") -> float:
        """Its resident memory in MiB (``VmHWM``: the most it held so far), from ``/proc/<pid>/status``."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise AssertionError(field)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM (the open batch is written) unless it has exited; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def _limit_open_files(nofile: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))


def rows(location: str, table: str = "job_runs", timeout: float = 5.0, expect: int = 1) -> list[dict]:
    """The rows of a table, read with DuckDB, waiting up to ``timeout`` s for at least ``expect`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with duckdb.connect() as con:
                result = con.execute(
                    f"select * from read_parquet('{location}/{table}/*/*.parquet', hive_partitioning=true)"
                )
                names = [d[0] for d in result.description]
                found = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        except duckdb.IOException:  # no file yet
            found = []
        if len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def post(port: int, body: bytes, content_type: str = "application/x-protobuf", path: str = TRACES, **headers: str):
    """POST ``path`` (OTLP/HTTP's ``/v1/traces``); returns (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type, **headers})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post_lineage(port: int, body: bytes, content_type: str = "application/json", **headers: str):
    """POST /api/v1/lineage; (status, headers, body)."""
    return post(port, body, content_type, LINEAGE, **headers)


def get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def metric_samples(text: str) -> dict[str, float]:
    """The samples of a ``GET /metrics`` text: name (with its labels, as written) -> value."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sample.labels.items())
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def metric(port: int, line_start: str) -> float:
    """A value of the collector's /metrics."""
    for line in get(port, "/metrics")[1].splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {line_start}")


@functools.cache
def gzip_bomb() -> bytes:
    """64 MiB of zeros, gzipped to ~64 KiB: far past a 256 KiB body limit once inflated."""
    return gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)


def connect(port: int) -> socket.socket:
    """A raw TCP connection to the collector's port."""
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def head(length: int, token: str = TOKEN) -> bytes:
    """The request line and headers of an OTLP/HTTP protobuf POST of ``length`` body bytes."""
    return (
        f"POST /v1/traces HTTP/1.1\r\nHost: collector\r\nContent-Type: application/x-protobuf\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def call(
    port: int, body: bytes, token: str | None = TOKEN
) -> tuple[grpc.StatusCode, ExportTraceServiceResponse | None]:
    """One raw OTLP/gRPC Export call: the status and the response."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        metadata = [("authorization", f"Bearer {token}")] if token is not None else None
        try:
            answer = export(body, metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            return error.code(), None
        return grpc.StatusCode.OK, ExportTraceServiceResponse.FromString(answer)
