"""Options are checked once, where they are read: a bad argument raises naming the option, a bad environment
variable is warned about once and its default used. None of them can make the processor spin or drop every span."""

from __future__ import annotations

import logging
import math
import os
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_datasink import config
from otel_datasink.config import Options
from otel_datasink.processor import DatasinkSpanProcessor

PREFIX = "OTEL_EXPORTER_DATASINK_"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No variable of the developer's shell, and no value warned about by an earlier test."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setattr(config, "_warned", set())


def warnings_about(caplog, variable: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and variable in r.getMessage()]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("schedule_delay", 0),
        ("schedule_delay", -1),
        ("schedule_delay", math.nan),
        ("schedule_delay", math.inf),
        ("timeout", 0),
        ("timeout", -5),
        ("timeout", 1e12),  # longer than any wait Python can make
        ("exit_timeout", -1),
        ("max_queue_size", 0),
        ("max_queue_size", -1),
        ("max_queue_size", 1.5),
        ("max_queue_size", "10"),
        ("max_queue_size", True),
        ("max_export_batch_size", 0),
        ("compression", "zstandard"),
        ("location", ""),
        ("s3_endpoint_url", "localhost:9000"),
        ("s3_region", " "),
        ("profile", 7),
        ("storage_options", ["anon"]),
    ],
)
def test_a_bad_keyword_argument_raises_naming_the_option(name, value):
    with pytest.raises(ValueError, match=f"^{name}: "):
        Options.resolve(**{name: value})
    with pytest.raises(ValueError, match=f"^{name}: "):
        Options(**{name: value})  # made directly, or by dataclasses.replace: the same check


def test_a_batch_larger_than_the_queue_is_refused_as_the_sdk_refuses_it():
    with pytest.raises(ValueError, match=r"max_export_batch_size \(20\) must not exceed max_queue_size \(10\)"):
        Options.resolve(max_queue_size=10, max_export_batch_size=20)
    with pytest.raises(ValueError, match="max_export_batch_size"):
        Options.resolve(max_export_batch_size=4096)  # above the default queue


def test_edge_values_that_cannot_hang_or_drop_are_accepted():
    assert Options.resolve(exit_timeout=0).exit_timeout == 0  # give the rows up at exit, counted in the log
    small = Options.resolve(max_queue_size=100)
    assert (small.max_queue_size, small.max_export_batch_size) == (100, 100)  # the default batch follows the queue
    assert Options.resolve(max_queue_size=1, schedule_delay=0.001).max_export_batch_size == 1
    assert Options.resolve(compression=" ZSTD ").compression == "zstd"
    assert Options.resolve(s3_endpoint_url="http://127.0.0.1:9000").s3_endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("suffix", "raw", "name"),
    [
        ("MAX_EXPORT_BATCH_SIZE", "0", "max_export_batch_size"),
        ("MAX_QUEUE_SIZE", "0", "max_queue_size"),
        ("MAX_QUEUE_SIZE", "-1", "max_queue_size"),
        ("MAX_QUEUE_SIZE", "many", "max_queue_size"),
        ("SCHEDULE_DELAY", "0", "schedule_delay"),
        ("SCHEDULE_DELAY", "nan", "schedule_delay"),
        ("TIMEOUT", "0", "timeout"),
        ("TIMEOUT", "inf", "timeout"),
        ("EXIT_TIMEOUT", "-1", "exit_timeout"),
        ("COMPRESSION", "zstandard", "compression"),
        ("S3_ENDPOINT_URL", "localhost:9000", "s3_endpoint_url"),
    ],
)
def test_a_bad_environment_value_is_warned_about_once_and_the_default_used(monkeypatch, caplog, suffix, raw, name):
    monkeypatch.setenv(PREFIX + suffix, raw)
    for _ in range(3):  # a processor and an exporter of the same job, say
        assert getattr(Options.resolve(), name) == getattr(Options(), name)
    [warning] = warnings_about(caplog, PREFIX + suffix)
    assert repr(raw) in warning and "using the default" in warning


def test_a_keyword_argument_wins_over_a_bad_variable_without_a_warning(monkeypatch, caplog):
    monkeypatch.setenv(PREFIX + "SCHEDULE_DELAY", "0")
    assert Options.resolve(schedule_delay=1).schedule_delay == 1
    assert not warnings_about(caplog, PREFIX)


def test_valid_environment_values_are_read_in_their_units(monkeypatch, caplog):
    monkeypatch.setenv(PREFIX + "SCHEDULE_DELAY", "250")
    monkeypatch.setenv(PREFIX + "EXIT_TIMEOUT", "0")
    monkeypatch.setenv(PREFIX + "MAX_QUEUE_SIZE", "64")
    options = Options.resolve()
    assert (options.schedule_delay, options.exit_timeout) == (0.25, 0)
    assert (options.max_queue_size, options.max_export_batch_size) == (64, 64)
    assert not warnings_about(caplog, PREFIX)


def test_a_variable_that_puts_the_batch_above_the_queue_is_ignored_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv(PREFIX + "MAX_QUEUE_SIZE", "100")
    monkeypatch.setenv(PREFIX + "MAX_EXPORT_BATCH_SIZE", "200")
    options = Options.resolve()
    assert (options.max_queue_size, options.max_export_batch_size) == (100, 100)
    assert len(warnings_about(caplog, PREFIX + "MAX_EXPORT_BATCH_SIZE='200'")) == 1

    # Against an argument, the variable is what gives way: a job's environment must not stop it.
    options = Options.resolve(max_export_batch_size=150)
    assert (options.max_queue_size, options.max_export_batch_size) == (2048, 150)
    assert len(warnings_about(caplog, PREFIX + "MAX_QUEUE_SIZE='100'")) == 1


def _run_jobs(provider: TracerProvider, count: int) -> None:
    tracer = provider.get_tracer("tests")
    for index in range(count):
        with tracer.start_as_current_span("job", attributes={"job.name": f"job{index}"}):
            pass


@pytest.mark.parametrize("suffix", ["MAX_EXPORT_BATCH_SIZE", "SCHEDULE_DELAY", "MAX_QUEUE_SIZE"])
def test_a_processor_built_with_a_zero_that_used_to_spin_or_drop_records_its_jobs_idly(
    monkeypatch, caplog, local_location, read_tables, suffix
):
    # MAX_EXPORT_BATCH_SIZE=0 spun the worker (1.6 CPU-seconds in 3 s, force_flush False), SCHEDULE_DELAY=0
    # busy-looped while idle, MAX_QUEUE_SIZE=0 dropped every span while force_flush returned True.
    monkeypatch.setenv(PREFIX + suffix, "0")
    provider = TracerProvider()
    processor = DatasinkSpanProcessor(local_location)
    provider.add_span_processor(processor)
    try:
        _run_jobs(provider, 3)
        assert processor.force_flush(timeout_millis=10_000) is True
        idle_from = time.process_time()
        time.sleep(1.0)
        assert time.process_time() - idle_from < 0.5  # the whole process, worker included: no busy loop
    finally:
        provider.shutdown()
    assert processor.dropped_spans == 0
    runs = read_tables(local_location).rows("job_runs")
    assert sorted((row["job_name"], row["status"]) for row in runs) == [
        (f"job{index}", status) for index in range(3) for status in ("STARTED", "SUCCESS")
    ]
    assert len(warnings_about(caplog, PREFIX + suffix)) == 1
