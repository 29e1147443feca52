"""A job that exits without calling ``shutdown()`` has every row on the store once the process is gone, promptly.

Each job runs in its own Python process against a real store (moto's S3 server over HTTP, or a folder) and
exits as jobs do: the end of the script, ``sys.exit(1)``, an uncaught exception. Nothing calls ``shutdown()`` or
``force_flush()``: the exit hook must write the rows before ``concurrent.futures`` stops taking work, which
S3 writes need (see ``otel_datasink.processor``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from network import SilentServer

from otel_datasink.config import Options

INSTRUMENT = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent)) or shutil.which(
    "opentelemetry-instrument"
)
EXIT_BUDGET = 10.0
"""Seconds a job process may take from start to exit (Python's start and the write included): generous on a
busy machine, and far below the 30 s write timeout an exit used to stall for."""


def run_job(script: str, *args: str, env: dict[str, str] | None = None, instrument: bool = False):
    """Runs ``script`` in a fresh Python (under ``opentelemetry-instrument`` if asked); returns it and its
    wall time in seconds."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "PYTHONPATH"}
    environment.update(OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none", **(env or {}))
    command = [sys.executable, "-c", textwrap.dedent(script), *args]
    if instrument:
        command = [INSTRUMENT, *command]
    begin = time.monotonic()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - begin


@pytest.fixture(params=["s3", "local"])
def location(request, tmp_path, moto_server) -> tuple[str, str | None]:
    """(location, S3 endpoint or None): a fresh bucket on the moto server, or a folder."""
    if request.param == "local":
        return str(tmp_path / "datasink"), None
    bucket = f"exit-{os.getpid()}-{time.monotonic_ns()}"
    moto_server.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/datasink", moto_server.endpoint_url


def location_env(location: tuple[str, str | None]) -> dict[str, str]:
    path, endpoint = location
    env = {"OTEL_EXPORTER_DATASINK_LOCATION": path}
    if endpoint:
        env["OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL"] = endpoint
    return env


def statuses(read_tables, location: tuple[str, str | None]) -> list[tuple[str, str]]:
    return sorted((row["job_name"], row["status"]) for row in read_tables(*location).rows("job_runs"))


CONFIGURE_JOB = """
    import sys
    from otel_datasink import configure, job_run

    configure()
    with job_run("ingest_orders", dataset="orders") as run:
        run.add_records(3)
"""


def test_a_configured_job_that_exits_without_shutdown_has_its_rows_written(location, read_tables):
    done, elapsed = run_job(CONFIGURE_JOB, env=location_env(location))
    assert done.returncode == 0, done.stderr
    assert "not written" not in done.stderr and "write failed" not in done.stderr, done.stderr
    assert elapsed < EXIT_BUDGET
    assert statuses(read_tables, location) == [("ingest_orders", "STARTED"), ("ingest_orders", "SUCCESS")]
    [update] = read_tables(*location).rows("dataset_status")
    assert (update["dataset"], update["records_written"]) == ("orders", 3)


ZERO_CODE_JOB = """
    import sys, time
    from opentelemetry import trace

    tracer = trace.get_tracer("job")
    with tracer.start_as_current_span("ingest", attributes={"job.name": "ingest_orders", "dataset.name": "orders"}):
        time.sleep(float(sys.argv[1]))
"""


@pytest.mark.skipif(INSTRUMENT is None, reason="opentelemetry-distro is not installed")
def test_the_zero_code_exporter_writes_the_rows_when_the_job_exits(location, read_tables):
    # The SDK's BatchSpanProcessor holds the span until its schedule delay (5 s) or its atexit shutdown, too
    # late for S3: the exit hook flushes the global provider first.
    env = {"OTEL_TRACES_EXPORTER": "datasink", "OTEL_SERVICE_NAME": "zero-code-job", **location_env(location)}
    done, elapsed = run_job(ZERO_CODE_JOB, "0", env=env, instrument=True)
    assert done.returncode == 0, done.stderr
    assert "not written" not in done.stderr and "could not export" not in done.stderr, done.stderr
    assert elapsed < EXIT_BUDGET
    assert statuses(read_tables, location) == [("ingest_orders", "SUCCESS")]


LONG_SPAN_JOB = """
    import sys, time
    from otel_datasink import configure, job_run

    configure(schedule_delay=0.5)
    with job_run("slow_job", dataset="orders"):
        time.sleep(float(sys.argv[1]))  # the worker writes the STARTED row meanwhile, on its timer
"""


@pytest.mark.parametrize("path", ["processor", "exporter"])
def test_a_job_span_open_for_seconds_then_the_exit_writes_its_end(path, location, read_tables):
    if path == "exporter" and INSTRUMENT is None:
        pytest.skip("opentelemetry-distro is not installed")
    seconds = 1.2  # past the processor's timer (0.5 s): the span outlives a write of the worker's own
    if path == "processor":
        done, elapsed = run_job(LONG_SPAN_JOB, str(seconds), env=location_env(location))
        expected = [("slow_job", "STARTED"), ("slow_job", "SUCCESS")]
    else:
        env = {"OTEL_TRACES_EXPORTER": "datasink", **location_env(location)}
        done, elapsed = run_job(ZERO_CODE_JOB, str(seconds), env=env, instrument=True)
        expected = [("ingest_orders", "SUCCESS")]
    assert done.returncode == 0, done.stderr
    assert "not written" not in done.stderr, done.stderr
    assert elapsed < seconds + EXIT_BUDGET
    assert statuses(read_tables, location) == expected


FAILING_JOB = """
    import sys
    from otel_datasink import configure, job_run

    configure()
    try:
        with job_run("load_orders", dataset="orders"):
            raise ConnectionResetError("warehouse went away")
    except ConnectionResetError:
        if sys.argv[1] == "exit":
            sys.exit(1)
        raise
"""


@pytest.mark.parametrize("how", ["exit", "uncaught"])
def test_a_job_that_fails_and_exits_with_an_error_has_its_failed_row_written(how, location, read_tables):
    done, elapsed = run_job(FAILING_JOB, how, env=location_env(location))
    assert done.returncode == 1, done.stderr
    assert "not written" not in done.stderr, done.stderr
    assert elapsed < EXIT_BUDGET
    [failed] = [row for row in read_tables(*location).rows("job_runs") if row["status"] != "STARTED"]
    assert (failed["job_name"], failed["status"], failed["error_type"]) == (
        "load_orders",
        "FAILED",
        "ConnectionResetError",
    )


@pytest.fixture
def silent_endpoint():
    """An S3 endpoint that accepts connections and never answers."""
    server = SilentServer()
    yield server.endpoint_url
    server.close()


@pytest.mark.parametrize("path", ["processor", "exporter"])
def test_a_hung_store_delays_the_exit_by_exit_timeout_only_and_the_lost_rows_are_logged_once(
    path, silent_endpoint, moto_server
):
    # moto_server only for its credentials in the environment: without any, botocore would fail at once.
    if path == "exporter" and INSTRUMENT is None:
        pytest.skip("opentelemetry-distro is not installed")
    exit_timeout = 1.5
    env = {
        "OTEL_EXPORTER_DATASINK_LOCATION": "s3://bucket/datasink",
        "OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL": silent_endpoint,
        "OTEL_EXPORTER_DATASINK_EXIT_TIMEOUT": str(int(exit_timeout * 1000)),  # the write timeout stays 30 s
    }
    if path == "processor":
        done, elapsed = run_job(CONFIGURE_JOB, env=env)
        expected = "shutdown: 3 row(s) not written"  # STARTED and SUCCESS rows, one dataset update
    else:
        done, elapsed = run_job(ZERO_CODE_JOB, "0", env={"OTEL_TRACES_EXPORTER": "datasink", **env}, instrument=True)
        expected = "process exit: 1 span(s) not written"
    assert done.returncode == 0, done.stderr
    assert elapsed < exit_timeout + 8, elapsed  # Python's start included; the write timeout (30 s) is not waited
    assert done.stderr.count("not written") == 1, done.stderr
    assert expected in done.stderr, done.stderr


def test_exit_timeout_defaults_to_5_seconds_and_reads_milliseconds_from_the_environment(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_DATASINK_EXIT_TIMEOUT", raising=False)
    assert Options.resolve().exit_timeout == 5.0
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_EXIT_TIMEOUT", "250")
    assert Options.resolve().exit_timeout == 0.25
    assert Options.resolve(exit_timeout=2).exit_timeout == 2
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_EXIT_TIMEOUT", "-1")
    assert Options.resolve().exit_timeout == 5.0  # ignored with a warning, like any value that does not convert


STRAGGLER_JOB = """
    import threading, time
    from otel_datasink import configure, job_run

    configure()
    started = threading.Event()


    def late_job():
        with job_run("late_job"):
            started.set()
            time.sleep(1)  # ends after the main thread has ended and the exit hook has flushed


    threading.Thread(target=late_job).start()
    started.wait()
    with job_run("main_job"):
        pass
"""


def test_a_job_ending_in_a_thread_that_outlives_the_main_thread_is_still_written(tmp_path, read_tables):
    # The exit hook writes what is held when the main thread ends but leaves the processor running: threads
    # still ending spans are joined after it, and the provider's atexit shutdown writes their rows (on a folder;
    # on S3 they fail fast once concurrent.futures has shut down, and are counted).
    location = (str(tmp_path / "datasink"), None)
    done, elapsed = run_job(STRAGGLER_JOB, env=location_env(location))
    assert done.returncode == 0, done.stderr
    assert "not written" not in done.stderr, done.stderr
    assert elapsed < EXIT_BUDGET
    assert statuses(read_tables, location) == [
        ("late_job", "STARTED"),
        ("late_job", "SUCCESS"),
        ("main_job", "STARTED"),
        ("main_job", "SUCCESS"),
    ]


@pytest.mark.skipif(INSTRUMENT is None, reason="opentelemetry-distro is not installed")
def test_an_otlp_exporter_to_a_hung_collector_does_not_spend_the_datasink_exporters_exit_time(
    silent_endpoint, location, read_tables
):
    # The provider flushes its processors one after the other: the exit hook flushes only the one around our
    # exporter, so the OTLP exporter's 3 s against a collector that never answers leave our 1 s intact.
    env = {
        "OTEL_TRACES_EXPORTER": "otlp_proto_http,datasink",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{silent_endpoint}/v1/traces",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "3",
        "OTEL_EXPORTER_DATASINK_EXIT_TIMEOUT": "1000",
        **location_env(location),
    }
    done, elapsed = run_job(ZERO_CODE_JOB, "0", env=env, instrument=True)
    assert done.returncode == 0, done.stderr
    assert "not written" not in done.stderr, done.stderr
    assert elapsed < 3 + EXIT_BUDGET  # the SDK's own atexit shutdown still waits for the OTLP exporter
    assert statuses(read_tables, location) == [("ingest_orders", "SUCCESS")]
