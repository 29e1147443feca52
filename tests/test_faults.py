"""A dead, silent, flaky or full store never slows or breaks the job, never leaves half a file, loses no rows
it still holds, and counts the rows it had to drop."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from network import SilentServer, free_port
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_datasink import DatasinkSpanExporter, DatasinkSpanProcessor

FAST = {"timeout": 2, "schedule_delay": 0.1}
"""Small bounds so each fault costs a few seconds at most."""
SPAN_BUDGET = 0.25
"""Seconds a job span may take to start and end while the store is down (the job must not notice): microseconds
when idle, but on a loaded CI machine the job thread may wait for the GIL behind a descheduled writer thread
(tens of ms); a span that waited on the store would take the write's bound, 2 s here."""
SLACK = 2.0
"""Seconds a bounded call may overrun its bound: thread wake-ups and GIL hand-overs on a loaded machine (two busy
loops on two cores: up to 0.3 s measured). Ignoring a bound costs far more: the rest of the write in progress
(``timeout=10`` below) or the 30 s default ``timeout``."""
WAIT = 30.0
"""Seconds a test waits for an event (a connection, a cut, a write) that comes in a second or two even under load:
only a broken behaviour waits it out."""


def run_job_spans(provider: TracerProvider, count: int, **attributes) -> list[float]:
    """Runs ``count`` job spans; returns how long each took from start to end, in seconds."""
    tracer = provider.get_tracer("tests")
    durations = []
    for index in range(count):
        begin = time.perf_counter()
        with tracer.start_as_current_span(
            "job", attributes={"job.name": f"job{index}", "dataset.name": "orders", **attributes}
        ):
            pass
        durations.append(time.perf_counter() - begin)
    return durations


def written_within(processor: DatasinkSpanProcessor, seconds: float = WAIT) -> bool:
    """Flushes until a flush has written everything (True), or ``seconds`` have passed (False).

    A flush whose write ran out of its ``timeout`` on a loaded machine is followed by another, as the worker
    would retry by itself: what counts is that the rows arrive, not that the first attempt was quick enough.
    """
    end = time.monotonic() + seconds
    while (remaining := end - time.monotonic()) > 0:
        if processor.force_flush(timeout_millis=max(1, int(remaining * 1000))):
            return True
    return False


class DeadEndpoint:
    """The URL of a dead S3 endpoint, and an event set once a write has reached it."""

    def __init__(self, url: str, reached: threading.Event | None = None) -> None:
        self.url = url
        self.reached = threading.Event() if reached is None else reached


class _SetOnLog(logging.Handler):
    """Sets ``event`` when a record whose message contains ``text`` is logged, from any thread."""

    def __init__(self, text: str, event: threading.Event) -> None:
        super().__init__(logging.INFO)
        self.text = text
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.fixture(params=["refused", "silent"])
def dead_endpoint(request, monkeypatch, caplog) -> Iterator[DeadEndpoint]:
    """An S3 endpoint that refuses connections (nothing listens) or accepts them and never answers.

    ``reached`` is set when a write's connection was refused (the writer logs the error) or accepted.
    """
    # Credentials, as the moto tests have: without any, botocore fails before it connects ("Unable to locate
    # credentials") and the dead endpoint is never tried.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    if request.param == "refused":
        endpoint = DeadEndpoint(f"http://127.0.0.1:{free_port()}")
        caplog.set_level(logging.INFO, logger="otel_datasink")  # the writer logs each retry at INFO
        handler = _SetOnLog(f'Could not connect to the endpoint URL: "{endpoint.url}/', endpoint.reached)
        logging.getLogger("otel_datasink").addHandler(handler)
        yield endpoint
        logging.getLogger("otel_datasink").removeHandler(handler)
    else:
        server = SilentServer()
        yield DeadEndpoint(server.endpoint_url, server.connected)
        server.close()


def test_spans_end_promptly_and_shutdown_keeps_its_bound_when_s3_is_dead(dead_endpoint):
    provider = TracerProvider()
    # A long write timeout: a flush or a shutdown that waited for the write in progress, instead of keeping its own
    # bound, would take seconds, far past the bound and its slack.
    processor = DatasinkSpanProcessor(
        "s3://bucket/datasink", s3_endpoint_url=dead_endpoint.url, timeout=10, schedule_delay=0.1
    )
    provider.add_span_processor(processor)

    durations = run_job_spans(provider, 50)
    assert dead_endpoint.reached.wait(WAIT)  # the worker is now retrying against the dead store, or stuck on it
    durations += run_job_spans(provider, 50)
    assert max(durations) < SPAN_BUDGET, max(durations)

    begin = time.monotonic()
    assert processor.force_flush(timeout_millis=300) is False
    assert time.monotonic() - begin < 0.3 + SLACK
    begin = time.monotonic()
    processor.shutdown(timeout_millis=500)
    assert time.monotonic() - begin < 0.5 + SLACK


def test_provider_shutdown_returns_within_the_timeout_option_when_s3_is_dead(dead_endpoint):
    provider = TracerProvider()
    provider.add_span_processor(
        DatasinkSpanProcessor("s3://bucket/datasink", s3_endpoint_url=dead_endpoint.url, timeout=1, schedule_delay=0.1)
    )
    run_job_spans(provider, 5)
    assert dead_endpoint.reached.wait(WAIT)  # shut down while the worker's write is against the dead store
    begin = time.monotonic()
    provider.shutdown()
    assert time.monotonic() - begin < 1 + SLACK


def test_provider_shutdown_with_the_exporter_returns_within_the_timeout_option_when_s3_is_dead(dead_endpoint):
    provider = TracerProvider()
    exporter = DatasinkSpanExporter("s3://bucket/datasink", s3_endpoint_url=dead_endpoint.url, timeout=1)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    durations = run_job_spans(provider, 5)
    assert max(durations) < SPAN_BUDGET
    begin = time.monotonic()
    provider.shutdown()
    assert time.monotonic() - begin < 1 + SLACK


def test_exporter_reports_failure_within_its_timeout_and_never_raises(dead_endpoint):
    finished = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(finished))
    run_job_spans(provider, 3)
    spans = finished.get_finished_spans()
    exporter = DatasinkSpanExporter("s3://bucket/datasink", s3_endpoint_url=dead_endpoint.url, **FAST)

    begin = time.monotonic()
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert time.monotonic() - begin < FAST["timeout"] + SLACK
    exporter.shutdown()
    assert exporter.export(spans) is SpanExportResult.FAILURE


def test_rows_queued_while_s3_was_down_arrive_when_it_comes_back(moto_server, s3_location, read_tables):
    bucket = s3_location.removeprefix("s3://").split("/")[0]
    provider = TracerProvider()
    processor = DatasinkSpanProcessor(
        s3_location, s3_endpoint_url=moto_server.endpoint_url, timeout=1, schedule_delay=0.1
    )
    provider.add_span_processor(processor)
    moto_server.stop()
    try:
        durations = run_job_spans(provider, 5)
        assert max(durations) < SPAN_BUDGET
        # A whole flush fails (not only a put that is retried until the store is back): its rows are kept.
        assert processor.force_flush(timeout_millis=WAIT * 1000) is False
    finally:
        moto_server.start()
        moto_server.client().create_bucket(Bucket=bucket)
    assert written_within(processor)
    run_job_spans(provider, 1, **{"job.name": "after"})
    processor.shutdown(timeout_millis=WAIT * 1000)  # writes the last rows, however slow the machine
    provider.shutdown()

    runs = read_tables(s3_location, endpoint_url=moto_server.endpoint_url).rows("job_runs")
    names = sorted(row["job_name"] for row in runs if row["status"] == "SUCCESS")
    assert names == ["after", "job0", "job1", "job2", "job3", "job4"]
    assert processor.dropped_spans == processor.dropped_rows == 0


class CuttingProxy:
    """A TCP proxy to the moto server that, while ``cut_after`` is set, drops each connection after it has
    forwarded that many bytes of request (an upload that fails half-way) and, while ``hang`` is set, takes
    new connections and never answers them (a hung store). ``cuts`` counts the cuts, ``hung`` is set once a
    connection has been left hanging."""

    def __init__(self, target_port: int, cut_after: int | None = None, hang: bool = False) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.hang = hang
        self.cuts = 0
        self._cut = threading.Condition()
        self.hung = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.endpoint_url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.hang:
                threading.Thread(target=SilentServer._drain, args=(client,), daemon=True).start()
                self.hung.set()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, request: bool) -> None:
        sent = 0
        try:
            while data := source.recv(1024):
                limit = self.cut_after if request else None
                if limit is not None and sent + len(data) > limit:
                    sink.sendall(data[: limit - sent])
                    self._close(source, sink)  # before counting: the client has seen its cut when the test looks
                    with self._cut:
                        self.cuts += 1
                        self._cut.notify_all()
                    return
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        self._close(source, sink)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def wait_cuts(self, count: int, timeout: float = WAIT) -> bool:
        """Whether ``count`` connections have been cut, waiting ``timeout`` seconds at most."""
        with self._cut:
            return self._cut.wait_for(lambda: self.cuts >= count, timeout)

    def close(self) -> None:
        self.server.close()


def test_upload_cut_half_way_leaves_no_object_and_the_rows_are_written_later(moto_server, s3_location, read_tables):
    bucket = s3_location.removeprefix("s3://").split("/")[0]
    proxy = CuttingProxy(moto_server.port, cut_after=3000)
    provider = TracerProvider()
    processor = DatasinkSpanProcessor(s3_location, s3_endpoint_url=proxy.endpoint_url, timeout=1, schedule_delay=0.1)
    provider.add_span_processor(processor)
    # Incompressible text makes each file far larger than the cut: every put is cut inside its body.
    run_job_spans(provider, 3, payload=os.urandom(12_000).hex())

    assert proxy.wait_cuts(1)
    # A whole flush fails (no put can get through): its rows are kept, for a later one.
    assert processor.force_flush(timeout_millis=WAIT * 1000) is False
    assert moto_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0

    proxy.cut_after = None
    assert written_within(processor)
    provider.shutdown()
    proxy.close()
    runs = read_tables(s3_location, endpoint_url=moto_server.endpoint_url).rows("job_runs")
    assert sorted(row["job_name"] for row in runs if row["status"] == "SUCCESS") == ["job0", "job1", "job2"]
    assert all(len(row["attributes"]["payload"]) == 24_000 for row in runs)


def test_rows_held_by_a_hung_store_arrive_once_it_answers_again(moto_server, s3_location, read_tables):
    proxy = CuttingProxy(moto_server.port, hang=True)
    provider = TracerProvider()
    processor = DatasinkSpanProcessor(s3_location, s3_endpoint_url=proxy.endpoint_url, timeout=1, schedule_delay=0.1)
    provider.add_span_processor(processor)
    durations = run_job_spans(provider, 3)
    assert max(durations) < SPAN_BUDGET
    assert proxy.hung.wait(WAIT)  # the worker's request is stuck on the hung store
    assert processor.force_flush(timeout_millis=100) is False

    proxy.hang = False
    # A request stuck on the hung store must not keep the worker from writing once the store is back: the stuck
    # one never ends by itself.
    assert written_within(processor)
    provider.shutdown()
    proxy.close()
    runs = read_tables(s3_location, endpoint_url=moto_server.endpoint_url).rows("job_runs")
    assert sorted(row["job_name"] for row in runs if row["status"] == "SUCCESS") == ["job0", "job1", "job2"]


def test_local_write_that_fails_half_way_leaves_no_file_and_is_written_later(local_location, read_tables):
    # RLIMIT_FSIZE makes the kernel refuse a file's bytes past a size: a disk that fills up mid-write.
    script = textwrap.dedent(
        """
        import os, resource, signal, sys
        from opentelemetry.sdk.trace import TracerProvider
        from otel_datasink import DatasinkSpanProcessor

        location = sys.argv[1]
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        provider = TracerProvider()
        # A long schedule delay: no timed retry of the worker's own runs while the files are listed.
        processor = DatasinkSpanProcessor(location, timeout=0.3, schedule_delay=30)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("job")
        for index in range(3):
            with tracer.start_as_current_span("job", attributes={"job.name": f"job{index}", "dataset.name": "d"}):
                pass
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        assert processor.force_flush(30000) is False
        left = sorted(os.path.relpath(os.path.join(folder, name), location)
                      for folder, _, names in os.walk(location) for name in names)
        print("LEFT", left, flush=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        assert processor.force_flush(30000) is True
        provider.shutdown()
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, local_location],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert completed.returncode == 0, completed.stderr
    assert "LEFT []" in completed.stdout, completed.stdout
    assert "File too large" in completed.stderr  # the fault did happen, and was logged
    runs = read_tables(local_location).rows("job_runs")
    assert sorted(row["job_name"] for row in runs if row["status"] == "SUCCESS") == ["job0", "job1", "job2"]
    assert all(path.suffix == ".parquet" for path in Path(local_location).rglob("*") if path.is_file())


def test_queue_bound_drops_the_oldest_spans_and_counts_them(local_location, read_tables):
    provider = TracerProvider()
    # A full export batch wakes the worker (the batch is at most the queue): it takes the first batch and is then
    # held in a slow profile, so that the queue only fills, whatever the threads' timing.
    processor = DatasinkSpanProcessor(local_location, max_queue_size=6, max_export_batch_size=6, schedule_delay=30)
    provider.add_span_processor(processor)
    working_profile = processor._profile
    mapping, release = threading.Event(), threading.Event()

    def slow_profile(record):
        mapping.set()
        release.wait(WAIT)
        return working_profile(record)

    processor._profile = slow_profile
    run_job_spans(provider, 3, **{"job.name": "first"})  # 6 spans: one batch
    assert mapping.wait(WAIT)
    run_job_spans(provider, 10)
    assert processor.dropped_spans == 2 * 10 - 6
    release.set()
    provider.shutdown()

    runs = read_tables(local_location).rows("job_runs")
    kept = [("first", status) for _ in range(3) for status in ("STARTED", "SUCCESS")]
    kept += [(f"job{index}", status) for index in (7, 8, 9) for status in ("STARTED", "SUCCESS")]
    assert sorted((row["job_name"], row["status"]) for row in runs) == sorted(kept)
    assert processor.dropped_rows == 0


def test_a_zero_queue_bound_is_refused_at_construction_not_left_to_drop_every_span(local_location):
    # A bound of 0 dropped every span while force_flush said True: now an argument error naming the option.
    with pytest.raises(ValueError, match="^max_queue_size: "):
        DatasinkSpanProcessor(local_location, max_queue_size=0)
    assert not Path(local_location).exists()


def test_rows_past_the_bound_while_the_store_is_away_are_dropped_oldest_first_and_counted(moto_server, read_tables):
    # A bucket that does not exist yet: every write fails until it is created.
    location = f"s3://late-bucket-{os.getpid()}-{time.monotonic_ns()}/datasink"
    provider = TracerProvider()
    # A missing bucket fails a write at once, whatever the timeout: a long one lets the last write, once the bucket
    # exists, set up its S3 client and put its files however loaded the machine.
    processor = DatasinkSpanProcessor(
        location, s3_endpoint_url=moto_server.endpoint_url, max_queue_size=5, timeout=5, schedule_delay=0.1
    )
    provider.add_span_processor(processor)
    for index in range(6):
        run_job_spans(provider, 1, **{"job.name": f"job{index}"})
        assert processor.force_flush(timeout_millis=WAIT * 1000) is False
    # 12 job_runs rows (STARTED + SUCCESS per run) and 6 dataset_status rows for a bound of 5 each.
    assert (processor.dropped_spans, processor.dropped_rows) == (0, 7 + 1)

    moto_server.client().create_bucket(Bucket=location.removeprefix("s3://").split("/")[0])
    assert written_within(processor)
    provider.shutdown()
    tables = read_tables(location, endpoint_url=moto_server.endpoint_url)
    assert sorted((row["job_name"], row["status"]) for row in tables.rows("job_runs")) == [
        ("job3", "SUCCESS"),
        ("job4", "STARTED"),
        ("job4", "SUCCESS"),
        ("job5", "STARTED"),
        ("job5", "SUCCESS"),
    ]
    assert sorted(row["job_name"] for row in tables.rows("dataset_status")) == [f"job{i}" for i in range(1, 6)]


def test_rows_that_cannot_be_encoded_are_dropped_and_counted_not_retried_forever(local_location, read_tables):
    provider = TracerProvider()
    processor = DatasinkSpanProcessor(local_location, schedule_delay=0.1, timeout=1)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("job", attributes={"job.name": "far_future"}) as span:
        # An instant no Parquet timestamp can hold (a clock in the wrong unit, many times over).
        span.add_event("dataset.update", {"dataset.name": "d"}, timestamp=10**30)
    processor.force_flush(timeout_millis=WAIT * 1000)
    assert processor.dropped_rows > 0

    run_job_spans(provider, 1, **{"job.name": "next"})
    assert processor.force_flush(timeout_millis=WAIT * 1000) is True
    provider.shutdown()
    tables = read_tables(local_location)
    assert sorted(row["job_name"] for row in tables.rows("job_runs") if row["status"] == "SUCCESS") == [
        "far_future",
        "next",
    ]
    assert [row["job_name"] for row in tables.rows("dataset_status")] == ["next"]


def test_exporter_reports_rows_it_cannot_encode_as_failure_without_raising(local_location, read_tables):
    finished = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(finished))
    with provider.get_tracer("tests").start_as_current_span("job", attributes={"job.name": "far_future"}) as span:
        span.add_event("dataset.update", {"dataset.name": "d"}, timestamp=10**30)
    run_job_spans(provider, 1, **{"job.name": "next"})
    bad, good = finished.get_finished_spans()
    exporter = DatasinkSpanExporter(local_location, **FAST)

    assert exporter.export([bad]) is SpanExportResult.FAILURE
    assert exporter.export([good]) is SpanExportResult.SUCCESS
    assert [row["job_name"] for row in read_tables(local_location).rows("dataset_status")] == ["next"]


def test_a_profile_that_raises_drops_its_spans_and_the_worker_writes_later_ones(local_location, read_tables):
    provider = TracerProvider()
    processor = DatasinkSpanProcessor(local_location, schedule_delay=0.05)
    provider.add_span_processor(processor)
    working_profile = processor._profile
    processor._profile = lambda record: 1 / 0  # a user's mapping code with a bug
    run_job_spans(provider, 1, **{"job.name": "mapped_by_a_broken_profile"})
    processor.force_flush(timeout_millis=WAIT * 1000)
    assert processor.dropped_spans == 2
    processor._profile = working_profile
    run_job_spans(provider, 1, **{"job.name": "after_the_fix"})
    assert processor.force_flush(timeout_millis=WAIT * 1000)
    provider.shutdown()
    assert {row["job_name"] for row in read_tables(local_location).rows("job_runs")} == {"after_the_fix"}
