"""A job that forks: every child's rows and the parent's land on S3, and the children exit promptly.

The parent writes to S3 before it forks, so each child inherits an s3fs filesystem bound to an event loop thread
that does not exist in the child: the writer must open its own. Each job runs in its own Python process against
moto's S3 server over HTTP; the children are made by ``os.fork`` (ending with ``os._exit`` after a flush, as
forking servers do, or normally) and by ``multiprocessing`` with the fork start method (ending normally: its
children run threading's exit hooks, not atexit, before their ``os._exit``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

CHILDREN = 3
CHILD_BUDGET = 10.0
"""Seconds a child may take from fork to exit: generous on a busy machine, far below the 45-60 s a child took
when its writes failed until the deadline."""

SETUP = """
    import json, os, sys, time
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from otel_datasink import DatasinkSpanExporter, configure

    path = sys.argv[1]
    if path == "processor":
        processor = configure(schedule_delay=60)  # only flushes and the exit write: no timer helps
        flush = processor.force_flush
    else:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(DatasinkSpanExporter(), schedule_delay_millis=60_000))
        trace.set_tracer_provider(provider)
        flush = provider.force_flush
    tracer = trace.get_tracer("job")


    def job(name):
        with tracer.start_as_current_span(name, attributes={"job.name": name, "dataset.name": name}):
            pass


    job("parent_before")
    assert flush(10_000), "the parent's first write failed"  # the parent's filesystem is open and used
"""

OS_FORK = """
    def child(index, ending):
        job(f"child{index}")
        if ending == "os_exit":
            os._exit(0 if flush(20_000) else 3)
        sys.exit(0)  # a normal exit: threading's exit hooks run in the child


    durations = []
    for index in range(CHILDREN):
        begin = time.monotonic()
        pid = os.fork()
        if pid == 0:
            child(index, sys.argv[2])
        _, status = os.waitpid(pid, 0)
        durations.append((os.waitstatus_to_exitcode(status), time.monotonic() - begin))
    job("parent_after")
    print(json.dumps(durations))
"""

MULTIPROCESSING = """
    import multiprocessing


    def child(index):
        job(f"child{index}")  # and returns: multiprocessing's exit must write the rows


    if __name__ == "__main__":
        context = multiprocessing.get_context("fork")
        durations = []
        for index in range(CHILDREN):
            begin = time.monotonic()
            process = context.Process(target=child, args=(index,))
            process.start()
            process.join(60)
            durations.append((process.exitcode, time.monotonic() - begin))
        job("parent_after")
        print(json.dumps(durations))
"""


def run_forking_job(body: str, *args: str, location: str, endpoint: str) -> list[tuple[int, float]]:
    """Runs the forking job; returns each child's (exit code, seconds from fork to exit)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "PYTHONPATH"}
    environment.update(
        OTEL_EXPORTER_DATASINK_LOCATION=location,
        OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL=endpoint,
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
    )
    script = textwrap.dedent(SETUP) + textwrap.dedent(body.replace("CHILDREN", str(CHILDREN)))
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "not written" not in done.stderr and "fork-safe" not in done.stderr, done.stderr
    return [tuple(item) for item in json.loads(done.stdout.strip().splitlines()[-1])]


@pytest.fixture
def bucket_location(moto_server) -> str:
    bucket = f"fork-{os.getpid()}-{time.monotonic_ns()}"
    moto_server.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/datasink"


def terminal_runs(read_tables, location: str, endpoint: str) -> list[str]:
    runs = read_tables(location, endpoint_url=endpoint).rows("job_runs")
    return sorted(row["job_name"] for row in runs if row["status"] == "SUCCESS")


EXPECTED = sorted(["parent_before", "parent_after", *(f"child{index}" for index in range(CHILDREN))])


@pytest.mark.parametrize("path", ["processor", "exporter"])
@pytest.mark.parametrize("ending", ["os_exit", "normal"])
def test_os_fork_children_write_their_rows_to_s3_and_exit_promptly(
    path, ending, moto_server, bucket_location, read_tables
):
    children = run_forking_job(OS_FORK, path, ending, location=bucket_location, endpoint=moto_server.endpoint_url)
    assert [code for code, _ in children] == [0] * CHILDREN
    assert max(seconds for _, seconds in children) < CHILD_BUDGET, children
    assert terminal_runs(read_tables, bucket_location, moto_server.endpoint_url) == EXPECTED


@pytest.mark.parametrize("path", ["processor", "exporter"])
def test_multiprocessing_fork_children_write_their_rows_to_s3_and_exit_promptly(
    path, moto_server, bucket_location, read_tables
):
    children = run_forking_job(MULTIPROCESSING, path, location=bucket_location, endpoint=moto_server.endpoint_url)
    assert [code for code, _ in children] == [0] * CHILDREN
    assert max(seconds for _, seconds in children) < CHILD_BUDGET, children
    assert terminal_runs(read_tables, bucket_location, moto_server.endpoint_url) == EXPECTED
