"""End-to-end throughput of ``otel-datasink collector`` over OTLP/HTTP protobuf, for job spans and non-job spans.

Starts the collector as a subprocess, sends pre-encoded ``ExportTraceServiceRequest`` bodies of 512 spans each
from another process (several keep-alive connections), and waits until every job span is a ``job_runs`` row in a
Parquet file (and every non-job span counted in ``non_job_spans``). Prints spans/s end to end, the collector's CPU
time per span (utime + stime from ``/proc/<pid>/stat``), and, beside them, the cost of only decoding the same
requests with protobuf. It does so for requests of job spans (``--kind job``), then of non-job spans (``--kind
non-job``: a web service's HTTP server spans, what a platform's services send when their OTLP exporters point at
the collector), and prints the spans per CPU-second of each side by side.

    python benchmarks/bench_collector.py [--requests 600] [--distinct 600] [--connections 4] [--protocol http|grpc]
        [--kind both|job|non-job] [--against REF] [--rounds 1] [--location DIR] [--idle 200 --slow 50] [--big 150000]

``--against REF`` (a git revision, e.g. ``main``) also runs the collector of that revision's code (its
``otel_datasink`` exported with ``git archive`` to a temporary folder) on the same requests in the same run, and
prints its figures beside this code's; ``--rounds N`` runs each N times, alternating which goes first, and the
last lines give the median and the best of the rounds.

``--idle N --slow M`` hold N idle connections and M slow ones (half send their headers a byte at a time, half
their body) open on the OTLP/HTTP port beside the load, reopening those the collector closes, as a hostile or
broken client would: the figures should stay within ~10% of a run without them.

``--big N`` then sends one OTLP/HTTP request of about N spans (the 512-span requests concatenated: protobuf merges
them) and asks ``GET /health`` again and again while the collector takes it, printing the slowest answer: how long
the event loop stalls on a big request (it should be a small fraction of the request's time).
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

SPANS_PER_REQUEST = 512
GRPC_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _kv(key: str, **value) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def make_request(seed: int) -> bytes:
    """512 ended job spans with the attributes and event a real job span carries, encoded."""
    rng = random.Random(seed)
    now = time.time_ns()
    spans = []
    for i in range(SPANS_PER_REQUEST):
        dataset = f"dataset_{i % 50}"
        spans.append(
            Span(
                trace_id=rng.randbytes(16),
                span_id=rng.randbytes(8),
                parent_span_id=rng.randbytes(8),
                name=f"run job_{i % 50}",
                kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=now - 60 * 10**9,
                end_time_unix_nano=now,
                status=Status(code=Status.STATUS_CODE_OK),
                attributes=[
                    _kv("job.name", string_value=f"job_{i % 50}"),
                    _kv("job.type", string_value="batch"),
                    _kv("job.run.attempt", int_value=1),
                    _kv("job.run.type", string_value="scheduled"),
                    _kv("job.records_processed", int_value=rng.randrange(10**6)),
                    _kv("dataset.name", string_value=dataset),
                    _kv("host.name", string_value="worker-7"),
                    _kv("thread.id", int_value=12),
                ],
                events=[
                    Span.Event(
                        name="dataset.update",
                        time_unix_nano=now,
                        attributes=[
                            _kv("dataset.name", string_value=dataset),
                            _kv("dataset.records_written", int_value=rng.randrange(10**6)),
                        ],
                    )
                ],
            )
        )
    resource = Resource(
        attributes=[_kv("service.name", string_value="spark-etl"), _kv("service.version", string_value="1.2.3")]
    )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


def make_non_job_request(seed: int) -> bytes:
    """512 ended HTTP server spans of a web service (no job keys; values that change from span to span), encoded."""
    rng = random.Random(seed)
    now = time.time_ns()
    spans = [
        Span(
            trace_id=rng.randbytes(16),
            span_id=rng.randbytes(8),
            parent_span_id=rng.randbytes(8),
            name="GET /api/orders/{id}",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=now - rng.randrange(10**8),
            end_time_unix_nano=now,
            status=Status(code=Status.STATUS_CODE_UNSET),
            attributes=[
                _kv("http.request.method", string_value="GET"),
                _kv("http.route", string_value="/api/orders/{id}"),
                _kv("url.path", string_value=f"/api/orders/{rng.randrange(10**6)}"),
                _kv("url.scheme", string_value="http"),
                _kv("http.response.status_code", int_value=rng.choice((200, 200, 200, 404, 500))),
                _kv("server.address", string_value="orders.internal"),
                _kv("client.address", string_value=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"),
                _kv("network.protocol.version", string_value="1.1"),
                _kv("user_agent.original", string_value="python-requests/2.32.3"),
                _kv("thread.id", int_value=rng.randrange(64)),
            ],
        )
        for _ in range(SPANS_PER_REQUEST)
    ]
    resource = Resource(
        attributes=[_kv("service.name", string_value="orders-api"), _kv("service.version", string_value="4.1.0")]
    )
    scope = InstrumentationScope(name="opentelemetry.instrumentation.flask", version="0.48b0")
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)])]
    )
    return request.SerializeToString()


def _health_during_big_request(port: int, body: bytes) -> tuple[float, int, float]:
    """Posts ``body`` while asking /health in a loop: (slowest /health answer, answers, seconds the post took)."""
    outcome = []

    def post() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
        outcome.append(connection.getresponse().status)
        connection.close()

    sender = threading.Thread(target=post)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    slowest, answers = 0.0, 0
    started = time.perf_counter()
    sender.start()
    while sender.is_alive():
        asked = time.perf_counter()
        connection.request("GET", "/health")
        connection.getresponse().read()
        slowest = max(slowest, time.perf_counter() - asked)
        answers += 1
        time.sleep(0.005)
    took = time.perf_counter() - started
    connection.close()
    if outcome != [200]:
        raise SystemExit(f"the big request was answered {outcome}")
    return slowest, answers, took


def _send(protocol: str, port: int, bodies: list[bytes], connections: int, ready, go) -> None:
    """The sender process: sends every body over ``connections`` keep-alive connections (or gRPC channels)."""
    share = [bodies[i::connections] for i in range(connections)]
    failures = []

    def http_worker(part: list[bytes]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for body in part:
            while True:
                connection.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    break
                if response.status != 503:
                    failures.append(response.status)
                    break
                time.sleep(float(response.getheader("Retry-After", "1")) / 10)
        connection.close()

    def grpc_worker(part: list[bytes]) -> None:
        import grpc

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            export = channel.unary_unary(GRPC_EXPORT, request_serializer=None, response_deserializer=None)
            for body in part:
                while True:
                    try:
                        export(body, timeout=60)
                        break
                    except grpc.RpcError as error:
                        if error.code() != grpc.StatusCode.UNAVAILABLE:
                            failures.append(error.code())
                            break
                        time.sleep(0.5)

    worker = grpc_worker if protocol == "grpc" else http_worker
    threads = [threading.Thread(target=worker, args=(part,)) for part in share]
    ready.set()
    go.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"requests failed: {failures[:5]}")


class _Pests:
    """Idle and slow connections held open on a port from a thread, reopened when the collector closes them."""

    def __init__(self, port: int, idle: int, slow: int) -> None:
        self.port = port
        self.idle = [None] * idle
        self.slow = [None] * slow
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Pests:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.idle + self.slow:
            if sock is not None:
                sock.close()

    def _open(self, slow: int | None) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setblocking(False)
        if slow is not None:  # then a byte at a time: of a header's value (even), of the body (odd)
            head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
            if slow % 2:
                head += b"Content-Type: application/x-protobuf\r\nContent-Length: 1000000\r\n\r\n"
            else:
                head += b"X-Slow: "
            sock.send(head)
        return sock

    @staticmethod
    def _alive(sock: socket.socket) -> bool:
        # The collector sends these connections nothing but its last words (408, 503) before it closes them.
        try:
            sock.recv(4096, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            pass
        return False

    def _run(self) -> None:
        first = True
        while first or not self._stop.wait(0.5):
            for group, slow in ((self.idle, False), (self.slow, True)):
                for i, sock in enumerate(group):
                    if sock is not None and not self._alive(sock):
                        sock.close()
                        sock = None
                        self.reopened += 1
                    if sock is None:
                        sock = group[i] = self._open(i if slow else None)
                    if slow:
                        try:
                            sock.send(b"x")
                        except OSError:
                            pass
            first = False


def _thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        seconds[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def _peak_rss_mib(pid: int) -> float:
    """The most resident memory the process has had, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _metric(port: int, name: str) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/metrics")
    for line in connection.getresponse().read().decode().splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Figures:
    """What one collector run measured."""

    acknowledged: float
    elapsed: float
    user: float
    system: float
    loop_cpu: float
    peak_rss: float
    reopened: int = 0
    stall: tuple[float, int, float] | None = None

    @property
    def cpu(self) -> float:
        """CPU seconds of the collector (user + system)."""
        return self.user + self.system


def _export(revision: str, folder: Path) -> Path:
    """The ``otel_datasink`` package of a git revision, exported under ``folder`` (for the collector to import)."""
    root = Path(__file__).resolve().parents[1]
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "otel_datasink"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def run_collector(code: Path, bodies: list[bytes], spans: int, job: bool, args, work: Path) -> Figures:
    """Starts the collector of the ``otel_datasink`` package under ``code``, sends ``bodies``, waits until their
    ``spans`` are written (job spans) or counted (non-job spans), and measures it."""
    location = str(Path(args.location) / work.name) if args.location else str(work / "datasink")
    port, grpc_port = _free_port(), _free_port()
    grpc_endpoint = f"127.0.0.1:{grpc_port}" if args.protocol == "grpc" else "none"
    big_limits = ["--max-body-bytes", str(len(args.big_body)), "--max-inflight-bytes", str(2 * len(args.big_body))]
    # The package imported is the one under `code`: run from there, with it first on the path.
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(code), os.environ.get("PYTHONPATH")))))
    collector = subprocess.Popen(
        [sys.executable, "-m", "otel_datasink.cli", "collector", "--location", location]
        + ["--http", f"127.0.0.1:{port}", "--grpc", grpc_endpoint, "--spool-dir", str(work / "spool")]
        + ["--flush-rows", str(args.flush_rows), "--flush-age", str(args.flush_age), "--max-pending-batches", "8"]
        + (big_limits if args.big and job else []),
        stderr=open(work / "collector.log", "wb"),  # noqa: SIM115 - closed with the process
        cwd=code,
        env=environment,
    )
    done_name = (
        'otel_datasink_collector_rows_written_total{table="job_runs"}'
        if job
        else "otel_datasink_collector_non_job_spans_total"
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _metric(port, "otel_datasink_collector_job_spans_total")
                break
            except OSError:
                if time.monotonic() > deadline or collector.poll() is not None:
                    raise SystemExit((work / "collector.log").read_text()) from None
                time.sleep(0.05)

        context = multiprocessing.get_context("spawn")
        ready, go = context.Event(), context.Event()
        send_port = grpc_port if args.protocol == "grpc" else port
        sender = context.Process(target=_send, args=(args.protocol, send_port, bodies, args.connections, ready, go))
        sender.start()
        with _Pests(port, args.idle, args.slow) as pests:
            time.sleep(0.5 if args.idle or args.slow else 0)  # all of them open before the load starts
            ready.wait()
            cpu_before = _cpu_seconds(collector.pid)
            threads_before = _thread_cpu_seconds(collector.pid)
            started = time.perf_counter()
            go.set()
            sender.join()
            acknowledged = time.perf_counter() - started
            while _metric(port, done_name) < spans:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            user, system = (
                after - before for after, before in zip(_cpu_seconds(collector.pid), cpu_before, strict=True)
            )
            threads_after = _thread_cpu_seconds(collector.pid)
            loop_cpu = threads_after[collector.pid] - threads_before[collector.pid]
            figures = Figures(acknowledged, elapsed, user, system, loop_cpu, _peak_rss_mib(collector.pid))
        figures.reopened = pests.reopened
        if args.big and job:
            figures.stall = _health_during_big_request(port, args.big_body)
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=30)
    return figures


def _print_run(label: str, kind: str, figures: Figures, spans: int, args) -> None:
    """The figures of one run, as lines."""
    f = figures
    print(f"--- {label}, {kind} spans")
    print(f"acknowledged all requests in  {f.acknowledged:7.2f} s  ({spans / f.acknowledged:9,.0f} spans/s)")
    print(f"done (end to end) in          {f.elapsed:7.2f} s  ({spans / f.elapsed:9,.0f} spans/s)")
    print(
        f"collector CPU time:           {f.cpu:7.2f} s  ({f.cpu / spans * 1e6:6.2f} us/span, "
        f"{spans / f.cpu:9,.0f} spans per CPU-second, {f.cpu / f.elapsed:.0%} of one core; "
        f"user {f.user:.2f} s, system {f.system:.2f} s)"
    )
    other = f.cpu - f.loop_cpu
    print(
        f"  of which the event loop:    {f.loop_cpu:7.2f} s  ({f.loop_cpu / spans * 1e6:6.2f} us/span: receive, "
        f"decode, map, Arrow); other threads {other:.2f} s ({other / spans * 1e6:.2f} us/span: spool, Parquet, put)"
    )
    print(f"collector peak resident memory: {f.peak_rss:.0f} MiB")
    if args.idle or args.slow:
        print(
            f"beside the load: {args.idle} idle and {args.slow} slow connections held open "
            f"({f.reopened} reopened after the collector closed them)"
        )
    if f.stall is not None:
        slowest, answers, took = f.stall
        print(
            f"/health during one request of {len(args.big_body) // 1024} KiB of job spans "
            f"(acknowledged in {took:.2f} s): slowest answer {slowest:.3f} s of {answers} answers"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600, help="requests of 512 spans (default 600)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--distinct", type=int, default=600, help="distinct request bodies, sent in turn")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http", help="OTLP/HTTP protobuf or OTLP/gRPC")
    parser.add_argument("--kind", choices=("both", "job", "non-job"), default="both", help="spans sent (default both)")
    parser.add_argument("--against", metavar="REF", help="also run the collector of this git revision's code")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each code per kind, alternating (default 1)")
    parser.add_argument("--location", help="where to write, a folder per run (default: temporary, removed after)")
    parser.add_argument("--flush-rows", type=int, default=100_000)
    parser.add_argument("--flush-age", type=float, default=0.5, help="seconds (the tail after the last request)")
    parser.add_argument("--idle", type=int, default=0, help="idle connections held open beside the load")
    parser.add_argument("--slow", type=int, default=0, help="slow connections (headers or body) held open beside it")
    parser.add_argument("--big", type=int, default=0, help="then one request of ~N spans, timing /health meanwhile")
    args = parser.parse_args()

    kinds = {"both": ("job", "non-job"), "job": ("job",), "non-job": ("non-job",)}[args.kind]
    makers = {"job": make_request, "non-job": make_non_job_request}
    spans = args.requests * SPANS_PER_REQUEST
    work = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    codes = {"this code": Path(__file__).resolve().parents[1]}
    if args.against:
        codes[args.against] = _export(args.against, work / "against")
    table = []
    try:
        for kind in kinds:
            # Distinct requests by default: records_processed, URLs and addresses take new values in every span, as
            # in real traffic (repeated bodies would let the collector's attribute cache hit every time).
            unique = [makers[kind](seed) for seed in range(min(args.requests, args.distinct))]
            bodies = [unique[i % len(unique)] for i in range(args.requests)]
            # The big request repeats the distinct ones: serialized protobuf messages concatenated are one, merged.
            args.big_body = b"".join(unique[i % len(unique)] for i in range(-(-args.big // SPANS_PER_REQUEST)))
            started = time.process_time()
            for body in bodies:
                ExportTraceServiceRequest.FromString(body)
            decode = time.process_time() - started
            print(
                f"OTLP/{args.protocol} protobuf: {args.requests} requests x {SPANS_PER_REQUEST} {kind} spans = "
                f"{spans} spans, {sum(map(len, bodies)) / 2**20:.1f} MiB, {args.connections} connections; protobuf "
                f"decode only: {decode / spans * 1e6:.2f} us/span ({spans / decode:,.0f} spans per CPU-second)"
            )
            for round_ in range(args.rounds):
                # Alternating which code goes first: the machine's other load drifts over a run.
                for label, code in list(codes.items())[:: -1 if round_ % 2 else 1]:
                    run = work / f"{kind}-{len(table)}"
                    run.mkdir()
                    figures = run_collector(code, bodies, spans, kind == "job", args, run)
                    _print_run(label, kind, figures, spans, args)
                    table.append((kind, label, figures))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\n{'spans':<10} {'code':<12} {'spans per CPU-second':>21} {'us/span':>8} {'end-to-end spans/s':>19}"
        + ("   (median of the rounds; best in brackets)" if args.rounds > 1 else "")
    )
    for kind in kinds:
        for label in codes:
            runs = [figures for k, code, figures in table if (k, code) == (kind, label)]
            cpu = statistics.median(figures.cpu for figures in runs)
            elapsed = statistics.median(figures.elapsed for figures in runs)
            best = f"  [{spans / min(figures.cpu for figures in runs):,.0f}]" if args.rounds > 1 else ""
            print(
                f"{kind:<10} {label:<12} {spans / cpu:>21,.0f} {cpu / spans * 1e6:>8.2f} {spans / elapsed:>19,.0f}"
                + best
            )


if __name__ == "__main__":
    main()
