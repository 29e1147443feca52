"""Spans from a real SDK TracerProvider -> processor or exporter -> local Parquet -> pyarrow and DuckDB.

Every test runs through each front door a user can pick: ``DatasinkSpanProcessor`` added to the provider,
or ``DatasinkSpanExporter`` under the SDK's BatchSpanProcessor or SimpleSpanProcessor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from otel_datasink import DatasinkSpanExporter, DatasinkSpanProcessor, job_run

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
PATHS = ("processor", "exporter_batch", "exporter_simple")


def at_ms(ns: int) -> datetime:
    """The UTC instant, cut to milliseconds, that a column holds for a time in epoch ns."""
    return EPOCH + timedelta(milliseconds=ns // 1_000_000)


def ids(span) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


class Pipeline:
    """A TracerProvider whose spans go to ``location`` through one of the front doors."""

    def __init__(self, path: str, location: str) -> None:
        self.path = path
        self.provider = TracerProvider(resource=Resource.create({"service.name": "orders-etl"}))
        if path == "processor":
            self.provider.add_span_processor(DatasinkSpanProcessor(location, schedule_delay=0.1))
        elif path == "exporter_batch":
            self.provider.add_span_processor(BatchSpanProcessor(DatasinkSpanExporter(location)))
        else:
            self.provider.add_span_processor(SimpleSpanProcessor(DatasinkSpanExporter(location)))
        self.tracer = self.provider.get_tracer("tests")

    def finish(self) -> None:
        """Ends the process's tracing as a job does on exit: everything queued is written."""
        self.provider.shutdown()

    def terminal(self, rows: list[dict]) -> list[dict]:
        """The rows of ended runs; the processor also wrote a STARTED row per run, checked here."""
        ended = [row for row in rows if row["status"] != "STARTED"]
        started = [row for row in rows if row["status"] == "STARTED"]
        if self.path == "processor":
            assert sorted(row["run_id"] for row in started) == sorted(row["run_id"] for row in ended)
        else:
            assert started == []
        return ended


@pytest.fixture(params=PATHS)
def pipeline(request, local_location) -> Iterator[Pipeline]:
    pipeline = Pipeline(request.param, local_location)
    yield pipeline
    pipeline.provider.shutdown()


def test_successful_run_becomes_a_success_row_and_an_implied_dataset_update(pipeline, local_location, read_tables):
    with pipeline.tracer.start_as_current_span(
        "ingest orders",
        attributes={
            "job.name": "ingest_orders",
            "dataset.name": "warehouse.orders",
            "job.run.attempt": 2,
            "job.run.logical_date": "2026-11-26T00:00:00Z",
            "job.run.type": "backfill",
            "team": "payments",
        },
    ) as span:
        span.set_attribute("job.records_processed", 1234)
    pipeline.finish()
    trace_id, span_id = ids(span)
    tables = read_tables(local_location)

    [run] = pipeline.terminal(tables.rows("job_runs"))
    assert run["run_id"] == trace_id + span_id
    assert run["job_name"] == "ingest_orders"
    assert run["job_type"] == "batch"
    assert run["status"] == "SUCCESS"
    assert run["dataset"] == "warehouse.orders"
    assert run["start_time"] == at_ms(span.start_time)
    assert run["end_time"] == at_ms(span.end_time)
    assert run["event_time"] == run["end_time"]
    assert run["duration_ms"] == span.end_time // 1_000_000 - span.start_time // 1_000_000
    assert run["records_processed"] == 1234
    assert run["error_type"] is None and run["error_message"] is None
    assert run["attempt"] == 2
    assert run["logical_date"] == datetime(2026, 11, 26, tzinfo=timezone.utc)
    assert run["run_type"] == "backfill"
    assert (run["trace_id"], run["span_id"], run["parent_span_id"]) == (trace_id, span_id, None)
    assert run["service_name"] == "orders-etl"
    assert run["attributes"] == {"team": "payments"}
    assert run["ingested_at"] >= run["end_time"]
    assert run["dt"] == run["event_time"].strftime("%Y-%m-%d")

    [update] = tables.rows("dataset_status")
    assert update["dataset"] == "warehouse.orders"
    assert update["status"] == "SUCCESS"
    assert update["updated_at"] == update["event_time"] == run["end_time"]
    assert update["records_written"] == 1234
    assert update["record_count"] is None and update["freshness_sla_minutes"] is None
    # A backfill without a watermark of its own: its data is as new as its logical date.
    assert update["watermark"] == run["logical_date"]
    assert (update["job_name"], update["run_id"]) == ("ingest_orders", run["run_id"])
    assert (update["trace_id"], update["span_id"], update["service_name"]) == (trace_id, span_id, "orders-etl")
    assert update["dt"] == run["dt"]


def test_escaped_exception_makes_a_failed_run_with_its_type_and_message(pipeline, local_location, read_tables):
    with pytest.raises(ValueError):
        with pipeline.tracer.start_as_current_span("load", attributes={"job.name": "load_orders"}):
            raise ValueError("bad row 7")
    pipeline.finish()

    [run] = pipeline.terminal(read_tables(local_location).rows("job_runs"))
    assert run["status"] == "FAILED"
    assert run["error_type"] == "ValueError"
    assert "bad row 7" in run["error_message"]
    assert run["end_time"] is not None and run["duration_ms"] >= 0


def test_error_status_and_error_type_make_a_failed_run(pipeline, local_location, read_tables):
    with pipeline.tracer.start_as_current_span(
        "load", attributes={"job.name": "load_orders", "dataset.name": "orders"}
    ) as span:
        span.set_attribute("error.type", "QuotaExceeded")
        span.set_status(Status(StatusCode.ERROR, "daily quota of 10 GB exceeded"))
    pipeline.finish()
    tables = read_tables(local_location)

    [run] = pipeline.terminal(tables.rows("job_runs"))
    assert (run["status"], run["error_type"], run["error_message"]) == (
        "FAILED",
        "QuotaExceeded",
        "daily quota of 10 GB exceeded",
    )
    assert "error.type" not in run["attributes"]
    assert [row["status"] for row in tables.rows("dataset_status")] == ["FAILED"]


def test_handled_exception_leaves_the_run_successful(pipeline, local_location, read_tables):
    with pipeline.tracer.start_as_current_span("load", attributes={"job.name": "load_orders"}) as span:
        try:
            raise TimeoutError("first try timed out")
        except TimeoutError as error:
            span.record_exception(error)
    pipeline.finish()

    [run] = pipeline.terminal(read_tables(local_location).rows("job_runs"))
    assert (run["status"], run["error_type"], run["error_message"]) == ("SUCCESS", None, None)


def test_streaming_job_makes_one_run_per_micro_batch(pipeline, local_location, read_tables):
    spans = []
    for batch in range(3):
        with pipeline.tracer.start_as_current_span(
            "micro-batch", attributes={"job.name": "stream_clicks", "job.type": "streaming"}
        ) as span:
            span.set_attribute("job.records_processed", 10 + batch)
            span.add_event("dataset.update", {"dataset.name": "clicks", "dataset.records_written": 10 + batch})
        spans.append(span)
    pipeline.finish()
    tables = read_tables(local_location)

    runs = sorted(pipeline.terminal(tables.rows("job_runs")), key=lambda row: row["records_processed"])
    assert [row["run_id"] for row in runs] == ["".join(ids(span)) for span in spans]
    assert {(row["job_name"], row["job_type"], row["status"]) for row in runs} == {
        ("stream_clicks", "streaming", "SUCCESS")
    }
    assert [row["records_processed"] for row in runs] == [10, 11, 12]
    updates = sorted(tables.rows("dataset_status"), key=lambda row: row["records_written"])
    assert [(row["dataset"], row["records_written"], row["run_id"]) for row in updates] == [
        ("clicks", 10 + n, run["run_id"]) for n, run in enumerate(runs)
    ]


def test_each_dataset_update_event_becomes_a_dataset_status_row(pipeline, local_location, read_tables):
    watermark_ns = 1_795_000_000_123_456_789
    with pipeline.tracer.start_as_current_span(
        "publish", attributes={"job.name": "publish", "dataset.name": "orders"}
    ) as span:
        span.add_event(
            "dataset.update",
            {
                "dataset.name": "orders",
                "dataset.records_written": 100,
                "dataset.record_count": 5000,
                "dataset.watermark": "2026-11-27T01:30:00+00:00",
                "dataset.freshness_sla_minutes": 60,
            },
        )
        span.add_event("dataset.update", {"dataset.name": "customers", "dataset.watermark": watermark_ns})
    pipeline.finish()
    events = {event.attributes["dataset.name"]: event.timestamp for event in span.events}

    # Explicit updates replace the implied update of dataset.name: two rows, not three.
    updates = {row["dataset"]: row for row in read_tables(local_location).rows("dataset_status")}
    assert set(updates) == {"orders", "customers"}
    orders, customers = updates["orders"], updates["customers"]
    assert (orders["records_written"], orders["record_count"], orders["freshness_sla_minutes"]) == (100, 5000, 60)
    assert orders["watermark"] == datetime(2026, 11, 27, 1, 30, tzinfo=timezone.utc)
    assert orders["updated_at"] == orders["event_time"] == at_ms(events["orders"])
    assert customers["watermark"] == at_ms(watermark_ns)
    assert customers["updated_at"] == at_ms(events["customers"])
    assert (customers["records_written"], customers["record_count"]) == (None, None)
    assert {row["status"] for row in updates.values()} == {"SUCCESS"}


def test_explicit_run_id_and_epoch_ns_logical_date_are_kept(pipeline, local_location, read_tables):
    logical_ns = int(datetime(2026, 11, 1, 6, tzinfo=timezone.utc).timestamp()) * 10**9
    with pipeline.tracer.start_as_current_span(
        "nightly",
        attributes={
            "job.name": "nightly",
            "job.run.id": "airflow:nightly:2026-11-01",
            "job.run.logical_date": logical_ns,
            "job.run.type": "scheduled",
        },
    ):
        pass
    pipeline.finish()

    [run] = pipeline.terminal(read_tables(local_location).rows("job_runs"))
    assert run["run_id"] == "airflow:nightly:2026-11-01"
    assert run["logical_date"] == datetime(2026, 11, 1, 6, tzinfo=timezone.utc)
    assert (run["run_type"], run["attempt"]) == ("scheduled", 1)
    assert run["attributes"] == {}


def test_spans_without_job_name_make_no_rows(pipeline, local_location, read_tables):
    with pipeline.tracer.start_as_current_span("pipeline", attributes={"job.name": "daily"}) as parent:
        with pipeline.tracer.start_as_current_span("read parquet", attributes={"rows": 3}):
            pass
        with pipeline.tracer.start_as_current_span("step", attributes={"job.name": "daily_step"}) as child:
            pass
    with pipeline.tracer.start_as_current_span("http GET /health"):
        pass
    pipeline.finish()

    runs = {row["job_name"]: row for row in pipeline.terminal(read_tables(local_location).rows("job_runs"))}
    assert set(runs) == {"daily", "daily_step"}
    assert runs["daily_step"]["parent_span_id"] == ids(parent)[1]
    assert runs["daily_step"]["span_id"] == ids(child)[1]


def test_started_row_carries_the_attributes_the_span_had_at_start(local_location, read_tables):
    pipeline = Pipeline("processor", local_location)
    with pipeline.tracer.start_as_current_span(
        "ingest", attributes={"job.name": "ingest", "dataset.name": "orders", "job.run.attempt": 3, "team": "a"}
    ) as span:
        span.set_attribute("job.records_processed", 7)
        span.set_attribute("late", "yes")
    pipeline.finish()
    rows = read_tables(local_location).rows("job_runs")

    [started] = [row for row in rows if row["status"] == "STARTED"]
    [ended] = [row for row in rows if row["status"] == "SUCCESS"]
    assert started["run_id"] == ended["run_id"] == "".join(ids(span))
    assert (started["job_name"], started["dataset"], started["attempt"]) == ("ingest", "orders", 3)
    assert started["start_time"] == started["event_time"] == at_ms(span.start_time)
    assert (started["end_time"], started["duration_ms"], started["records_processed"]) == (None, None, None)
    assert started["attributes"] == {"team": "a"}
    assert ended["attributes"] == {"team": "a", "late": "yes"}
    assert ended["records_processed"] == 7
    # A run that has only started has updated no dataset yet.
    assert len(read_tables(local_location).rows("dataset_status")) == 1


def test_processor_and_exporter_derive_the_same_run_id_for_the_same_span(tmp_path, read_tables):
    provider = TracerProvider()
    provider.add_span_processor(DatasinkSpanProcessor(str(tmp_path / "p"), schedule_delay=0.1))
    provider.add_span_processor(SimpleSpanProcessor(DatasinkSpanExporter(str(tmp_path / "e"))))
    with provider.get_tracer("tests").start_as_current_span("job", attributes={"job.name": "job"}):
        pass
    provider.shutdown()

    by_processor = [row for row in read_tables(str(tmp_path / "p")).rows("job_runs") if row["status"] == "SUCCESS"]
    by_exporter = read_tables(str(tmp_path / "e")).rows("job_runs")
    assert by_processor == [{**by_exporter[0], "ingested_at": by_processor[0]["ingested_at"]}]


def run_script(code: str, **env: str) -> dict:
    """Runs a user's script in a fresh interpreter (the global tracer provider is set once per process)."""
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_configure_adds_to_the_existing_global_provider_and_job_run_records(local_location, read_tables):
    result = run_script(
        """
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import otel_datasink

        provider = TracerProvider(resource=Resource.create({"service.name": "billing"}))
        exported = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exported))
        trace.set_tracer_provider(provider)

        first = otel_datasink.configure(schedule_delay=0.1)
        again = otel_datasink.configure(schedule_delay=0.1)  # a second call must not double every row
        with otel_datasink.job_run("bill", dataset="invoices", run_type="manual") as run:
            run.add_records(40)
            run.add_records(2)
            run.dataset_updated("invoices", records_written=42, record_count=1000, freshness_sla_minutes=30)
            run.dataset_updated("ledger", records_written=1)
        try:
            with otel_datasink.job_run("bill_again"):
                raise RuntimeError("ledger locked")
        except RuntimeError:
            pass
        provider.shutdown()
        print(json.dumps({"same_provider": trace.get_tracer_provider() is provider,
                          "same_processor": first is again,
                          "exported": [span.name for span in exported.get_finished_spans()]}))
        """,
        OTEL_EXPORTER_DATASINK_LOCATION=local_location,
    )
    assert result == {"same_provider": True, "same_processor": True, "exported": ["bill", "bill_again"]}
    tables = read_tables(local_location)
    assert len(tables.rows("job_runs")) == 4
    runs = {(row["job_name"], row["status"]): row for row in tables.rows("job_runs")}
    assert set(runs) == {("bill", "STARTED"), ("bill", "SUCCESS"), ("bill_again", "STARTED"), ("bill_again", "FAILED")}
    bill = runs["bill", "SUCCESS"]
    assert (bill["records_processed"], bill["dataset"], bill["run_type"]) == (42, "invoices", "manual")
    assert bill["service_name"] == "billing"
    failed = runs["bill_again", "FAILED"]
    # A run that counted nothing has no records_processed, rather than a made-up 0.
    assert (failed["error_type"], failed["records_processed"]) == ("RuntimeError", None)
    assert "ledger locked" in failed["error_message"]
    updates = {row["dataset"]: row for row in tables.rows("dataset_status") if row["status"] == "SUCCESS"}
    assert (updates["invoices"]["records_written"], updates["invoices"]["record_count"]) == (42, 1000)
    assert updates["invoices"]["freshness_sla_minutes"] == 30
    assert updates["ledger"]["records_written"] == 1
    assert updates["ledger"]["run_id"] == bill["run_id"]


def test_configure_without_a_provider_creates_the_global_one(local_location, read_tables):
    result = run_script(
        """
        import json
        from opentelemetry import trace
        import otel_datasink

        processor = otel_datasink.configure(schedule_delay=0.1)
        with otel_datasink.job_run("solo") as run:
            run.add_records(1)
        trace.get_tracer_provider().shutdown()
        print(json.dumps({"provider": type(trace.get_tracer_provider()).__module__,
                          "location": processor.options.location}))
        """,
        OTEL_EXPORTER_DATASINK_LOCATION=local_location,
    )
    assert result == {"provider": "opentelemetry.sdk.trace", "location": local_location}
    assert {row["status"] for row in read_tables(local_location).rows("job_runs")} == {"STARTED", "SUCCESS"}


def test_forked_worker_process_writes_its_own_runs_once(local_location, read_tables):
    result = run_script(
        """
        import json, os
        from opentelemetry.sdk.trace import TracerProvider
        from otel_datasink import DatasinkSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(DatasinkSpanProcessor(schedule_delay=0.1))
        tracer = provider.get_tracer("job")
        with tracer.start_as_current_span("before", attributes={"job.name": "before_fork"}):
            pass
        pid = os.fork()
        if pid == 0:
            with tracer.start_as_current_span("child", attributes={"job.name": "in_child"}):
                pass
            os._exit(0 if provider.force_flush(5000) else 3)
        _, status = os.waitpid(pid, 0)
        with tracer.start_as_current_span("after", attributes={"job.name": "after_fork"}):
            pass
        provider.shutdown()
        print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status)}))
        """,
        OTEL_EXPORTER_DATASINK_LOCATION=local_location,
    )
    assert result == {"child_exit": 0}
    runs = read_tables(local_location).rows("job_runs")
    # The span queued before the fork is written by the parent only, not again by the child.
    assert sorted((row["job_name"], row["status"]) for row in runs) == [
        (name, status) for name in ("after_fork", "before_fork", "in_child") for status in ("STARTED", "SUCCESS")
    ]


def test_a_processor_shut_down_before_a_fork_writes_nothing_in_the_child(local_location, read_tables):
    result = run_script(
        """
        import json, os
        from opentelemetry.sdk.trace import TracerProvider
        from otel_datasink import DatasinkSpanProcessor

        provider = TracerProvider()
        processor = DatasinkSpanProcessor(schedule_delay=0.1)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("job")
        with tracer.start_as_current_span("before", attributes={"job.name": "before_fork"}):
            pass
        provider.shutdown()
        pid = os.fork()
        if pid == 0:
            with tracer.start_as_current_span("child", attributes={"job.name": "in_child"}):
                pass
            flushed = processor.force_flush(2000)
            processor.shutdown()
            os._exit(3 if flushed else 0)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status)}))
        """,
        OTEL_EXPORTER_DATASINK_LOCATION=local_location,
    )
    assert result == {"child_exit": 0}
    runs = read_tables(local_location).rows("job_runs")
    assert sorted((row["job_name"], row["status"]) for row in runs) == [
        ("before_fork", "STARTED"),
        ("before_fork", "SUCCESS"),
    ]


@pytest.mark.parametrize("as_given", [lambda path: f"file://{path}/", Path], ids=["file-url", "pathlib"])
def test_location_may_be_a_file_url_or_a_path_object(tmp_path, read_tables, as_given):
    provider = TracerProvider()
    provider.add_span_processor(DatasinkSpanProcessor(as_given(tmp_path / "tables"), schedule_delay=0.1))
    with provider.get_tracer("tests").start_as_current_span("job", attributes={"job.name": "job"}):
        pass
    provider.shutdown()
    rows = read_tables(str(tmp_path / "tables")).rows("job_runs")
    assert sorted(row["status"] for row in rows) == ["STARTED", "SUCCESS"]


def test_job_run_keeps_records_processed_the_job_set_itself(tmp_path, read_tables):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DatasinkSpanExporter(str(tmp_path))))
    tracer = provider.get_tracer("tests")
    with job_run("self_counted", tracer=tracer, attributes={"job.records_processed": 7}):
        pass
    with job_run("set_on_span", tracer=tracer) as run:
        run.span.set_attribute("job.records_processed", 9)
    with job_run("counted", tracer=tracer) as run:
        run.add_records(0)
    provider.shutdown()

    runs = {row["job_name"]: row["records_processed"] for row in read_tables(str(tmp_path)).rows("job_runs")}
    assert runs == {"self_counted": 7, "set_on_span": 9, "counted": 0}


def test_a_busy_job_gathers_its_rows_into_few_files_instead_of_one_per_wake_up(tmp_path, read_tables):
    # Every 16 queued spans wake the worker; its rows still gather until the flush, so a burst of 300 runs
    # lands as one file per table rather than dozens of small ones (each costs Athena and DuckDB a request).
    processor = DatasinkSpanProcessor(str(tmp_path), schedule_delay=60, max_export_batch_size=16)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("tests")
    for _ in range(300):
        with tracer.start_as_current_span("burst", attributes={"job.name": "burst", "dataset.name": "d"}):
            pass
    assert processor.force_flush(10_000)
    provider.shutdown()
    for table in ("job_runs", "dataset_status"):
        assert len(list((tmp_path / table).glob("dt=*/*.parquet"))) == 1, table
    assert len(read_tables(str(tmp_path)).rows("job_runs")) == 600


def test_every_front_door_opens_its_options_profile_and_writer_with_one_factory(local_location, monkeypatch):
    from otel_datasink.collector.server import Collector
    from otel_datasink.collector.settings import CollectorSettings
    from otel_datasink.config import Options
    from otel_datasink.mapping import SpanRecord
    from otel_datasink.pipeline import Pipeline as Opened
    from otel_datasink.replay import open_pipeline

    opened = []
    real_open = Opened.open.__func__

    def recording_open(cls, options):
        opened.append(options.profile)
        return real_open(cls, options)

    monkeypatch.setattr(Opened, "open", classmethod(recording_open))
    processor = DatasinkSpanProcessor(local_location, profile="airflow")
    DatasinkSpanExporter(local_location, profile="cicd")
    Collector(Options.resolve(local_location, profile="default"), CollectorSettings())
    replayed = open_pipeline(Options.resolve(local_location, profile="airflow"), run_type="backfill")
    processor.shutdown()

    assert opened == ["airflow", "cicd", "default", "airflow"]
    record = SpanRecord("job", 1, 2, None, 0, 1, 0, "", {"job.name": "ingest"})
    assert replayed.profile(record).attributes["job.run.type"] == "backfill"
