"""OpenLineage run events -> the span conventions -> the one mapping: events made by openlineage-python's own classes,
the real events of ``dbt-ol`` (``tests/fixtures/openlineage/dbt``), Airflow- and Spark-shaped fixtures (see
``tests/fixtures/openlineage/README.md`` for the source each follows), ``replay`` of the client's file transport
output, and the views collapsing START and COMPLETE of one run however they arrive.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.uuid import generate_new_uuid
from openlineage_events import FIXTURES, PRODUCER, WAREHOUSE, event, iso, now

from otel_datasink import local
from otel_datasink.cli import main
from otel_datasink.config import Options
from otel_datasink.mapping import map_records
from otel_datasink.openlineage import (
    MAX_STACK_TRACE,
    OpenLineageError,
    dataset_name,
    parse_time,
    record_of,
    records_of,
    span_id_of,
)
from otel_datasink.profiles import default_profile


def rows_of(*events: dict, **options) -> dict[str, list[dict]]:
    records = []
    for one in events:
        records.extend(records_of(one, **options)[0])
    return map_records(records, default_profile, ingested_at_ms=0)


def write_lines(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(one) + "\n" for one in events))
    return path


def replay(capsys, location: str, *files: Path, args: tuple[str, ...] = ()) -> str:
    assert main(["replay", "--location", location, "--no-progress", *args, *map(str, files)]) == 0
    return capsys.readouterr().out


# --- the mapping -------------------------------------------------------------------------------------------


def test_start_and_complete_become_a_started_and_a_success_row_with_the_outputs_updates():
    run_id, parent = str(generate_new_uuid()), str(generate_new_uuid())
    started, ended = now(), now() + dt.timedelta(seconds=90)
    tables = rows_of(
        event(RunState.START, started, run_id, parent=parent),
        event(RunState.COMPLETE, ended, run_id, rows=1200, parent=parent),
    )
    start, done = tables["job_runs"]
    (update,) = tables["dataset_status"]

    assert start["status"] == "STARTED" and done["status"] == "SUCCESS"
    for row in (start, done):
        assert row["run_id"] == run_id and row["job_name"] == "load_orders" and row["attempt"] == 1
        assert row["job_type"] == "batch"
        assert row["logical_date"] == int(dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc).timestamp() * 1000)
        assert row["service_name"] == "etl-runner"
        assert row["dataset"] == f"{WAREHOUSE}/shop.public.orders"
        # The parent run is queryable: its job and run id in the columns (and attributes), its span id as the
        # parent span.
        assert (row["parent_job_name"], row["parent_run_id"]) == ("nightly", parent)
        assert row["trace_id"] == parent.replace("-", "")
        assert row["span_id"] == f"{span_id_of(run_id):016x}"
        assert row["parent_span_id"] == f"{span_id_of(parent):016x}"
        assert row["attributes"]["openlineage.parent.run_id"] == parent
        assert row["attributes"]["openlineage.parent.job.name"] == "nightly"
        assert row["attributes"]["openlineage.parent.job.namespace"] == "etl"
        assert row["attributes"]["openlineage.job.namespace"] == "etl"
        assert row["attributes"]["openlineage.producer"] == PRODUCER
        assert row["inputs"] == [f"{WAREHOUSE}/shop.staging.orders_raw"]
    assert start["start_time"] == int(started.timestamp() * 1000) and start["end_time"] is None
    # A COMPLETE event says when the run ended, not when it started: the views take the start from START.
    assert done["end_time"] == int(ended.timestamp() * 1000) and done["start_time"] is None
    assert done["records_processed"] == 1200
    assert update["dataset"] == f"{WAREHOUSE}/shop.public.orders"
    assert (update["status"], update["records_written"], update["run_id"]) == ("SUCCESS", 1200, run_id)
    assert update["updated_at"] == done["end_time"]


def test_fail_gives_a_failed_row_with_the_error_and_failed_updates_and_abort_is_aborted():
    run_id = str(generate_new_uuid())
    tables = rows_of(event(RunState.FAIL, now(), run_id, error="no such table: orders_raw"))
    (row,) = tables["job_runs"]
    (update,) = tables["dataset_status"]

    assert row["status"] == "FAILED"
    assert row["error_message"] == "no such table: orders_raw"
    assert row["error_type"] == "ValueError"  # named by the traceback's last line
    trace = json.loads(row["attributes"]["openlineage.error.stack_trace"])
    assert trace.startswith("Traceback (most recent call last):\n") and trace.endswith("orders_raw\n")
    assert row["attributes"]["openlineage.error.programming_language"] == "python"
    assert update["status"] == "FAILED"  # freshness follows successes only, as for spans

    (aborted,) = rows_of(event(RunState.ABORT, now(), str(generate_new_uuid())))["job_runs"]
    assert (aborted["status"], aborted["error_type"], aborted["error_message"]) == ("FAILED", "aborted", None)


def test_a_huge_stack_trace_is_capped_keeping_both_ends():
    one = event(RunState.FAIL, now(), str(generate_new_uuid()), error="boom")
    one["run"]["facets"]["errorMessage"]["stackTrace"] = (
        "java.lang.IllegalStateException: boom\n" + "\tat x\n" * 100_000
    )
    (row,) = rows_of(one)["job_runs"]
    trace = json.loads(row["attributes"]["openlineage.error.stack_trace"])
    assert len(trace) < MAX_STACK_TRACE + 100 and "characters cut" in trace
    assert trace.startswith("java.lang.IllegalStateException") and trace.endswith("\tat x\n")
    assert row["error_type"] == "java.lang.IllegalStateException"


@pytest.mark.parametrize("kind", ["RUNNING", "OTHER", None])
def test_running_and_other_events_make_no_row_but_are_counted(kind):
    one = event(RunState.START, now(), str(generate_new_uuid()))
    if kind is None:
        del one["eventType"]  # optional in the spec
    else:
        one["eventType"] = kind
    records, types = records_of(one)
    assert records == [] and types == [kind or "OTHER"]


def test_job_and_dataset_events_are_static_lineage_and_make_no_row():
    job_event = {
        "eventTime": iso(now()),
        "producer": PRODUCER,
        "schemaURL": "x",
        "job": {"namespace": "a", "name": "b"},
    }
    dataset_event = {"eventTime": iso(now()), "producer": PRODUCER, "schemaURL": "x", "dataset": {"namespace": "a"}}
    assert records_of([job_event, dataset_event]) == ([], ["static", "static"])


def test_a_batch_maps_each_event_and_names_the_position_of_a_bad_one():
    run_id = str(generate_new_uuid())
    good = [event(RunState.START, now(), run_id), event(RunState.COMPLETE, now(), run_id)]
    records, types = records_of(good)
    assert len(records) == 2 and types == ["START", "COMPLETE"]
    broken = [good[0], {**good[1], "run": {}}]
    with pytest.raises(OpenLineageError, match=r"^\[1\]\.run\.runId: missing$"):
        records_of(broken)


def _without(path: str):
    def change(one: dict) -> None:
        *parents, last = path.split(".")
        target = one
        for key in parents:
            target = target[key]
        del target[last]

    return change


INVALID = {
    "missing run id": (_without("run.runId"), "run.runId: missing"),
    "missing run": (_without("run"), "run: missing"),
    "missing job name": (_without("job.name"), "job.name: missing"),
    "missing job namespace": (_without("job.namespace"), "job.namespace: missing"),
    "missing event time": (_without("eventTime"), "eventTime: missing"),
    "unknown event type": (lambda one: one.update(eventType="FINISHED"), "eventType: unknown 'FINISHED'"),
    "event time not a date": (lambda one: one.update(eventTime="yesterday"), "eventTime: not an ISO 8601"),
    "run id not a string": (lambda one: one["run"].update(runId=42), "run.runId: must be a string, not a number"),
    "outputs not an array": (lambda one: one.update(outputs={}), "outputs: must be an array, not an object"),
    "output without a name": (lambda one: one["outputs"][0].pop("name"), "outputs[0].name: missing"),
    "producer not a string": (lambda one: one.update(producer=["x"]), "producer: must be a string"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_event_raises_one_error_naming_the_field(case):
    change, message = INVALID[case]
    one = event(RunState.START, now(), str(generate_new_uuid()))
    change(one)
    with pytest.raises(OpenLineageError) as raised:
        record_of(one)
    assert str(raised.value).startswith(message)
    with pytest.raises(OpenLineageError, match="must be a JSON object"):
        records_of("START")


def test_the_namespace_prefix_option_names_jobs_namespace_slash_name(monkeypatch):
    one = event(RunState.START, now(), str(generate_new_uuid()))
    assert rows_of(one, namespace_prefix=True)["job_runs"][0]["job_name"] == "etl/load_orders"
    assert rows_of(one)["job_runs"][0]["job_name"] == "load_orders"

    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_OPENLINEAGE_NAMESPACE_PREFIX", "TRUE")
    assert Options.resolve().openlineage_namespace_prefix is True
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_OPENLINEAGE_NAMESPACE_PREFIX", "maybe")  # logged, default kept
    assert Options.resolve().openlineage_namespace_prefix is False
    with pytest.raises(ValueError, match="openlineage_namespace_prefix: must be true or false"):
        Options.resolve(openlineage_namespace_prefix="maybe")


@pytest.mark.parametrize(
    ("namespace", "name", "expected"),
    [
        ("postgres://db:5432", "shop.public.orders", "postgres://db:5432/shop.public.orders"),
        ("s3://lake", "raw/clicks", "s3://lake/raw/clicks"),
        ("file", "/data/out.parquet", "file/data/out.parquet"),
        ("bigquery", "project.dataset.table", "bigquery/project.dataset.table"),
        ("hdfs://nn:8020/", "warehouse/t", "hdfs://nn:8020/warehouse/t"),
    ],
)
def test_dataset_names_are_namespace_slash_name(namespace, name, expected):
    assert dataset_name(namespace, name) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T10:00:00Z", "2026-11-28T10:00:00+00:00"),
        ("2026-11-28T10:00:00.123456789Z", "2026-11-28T10:00:00.123456+00:00"),  # the Java client's nanoseconds
        ("2026-11-28T12:00:00.5+02:00", "2026-11-28T10:00:00.500000+00:00"),
        ("2026-11-28T10:00", "2026-11-28T10:00:00+00:00"),
    ],
)
def test_event_times_parse_as_the_producers_write_them(text, expected):
    assert parse_time(text) == int(dt.datetime.fromisoformat(expected).timestamp() * 1_000_000) * 1000
    assert parse_time("2026-13-01T00:00:00Z") is None and parse_time("2026-11-28") is None


# --- fixtures of real producers ------------------------------------------------------------------------------


def test_real_dbt_ol_events_give_a_run_per_model_under_the_dbt_run_job(tmp_path, capsys, read_tables):
    location = str(tmp_path / "datasink")
    out = replay(capsys, location, FIXTURES / "dbt" / "dbt-ol-run.jsonl")
    assert "8 OpenLineage event(s)" in out and "0 bad line(s)" in out
    runs = {(row["job_name"], row["status"]): row for row in read_tables(location).rows("job_runs")}

    assert set(runs) == {
        (job, status)
        for job in (
            "dbt-run-shop",
            "shop.main.shop.orders",
            "shop.main.shop.daily_revenue",
            "shop.main.shop.order_status",
        )
        for status in ("STARTED", "SUCCESS" if "orders" in job or "revenue" in job else "FAILED")
    }
    wrapper = runs["dbt-run-shop", "FAILED"]
    failed_model = runs["shop.main.shop.order_status", "FAILED"]
    assert failed_model["parent_span_id"] == wrapper["span_id"]  # the model's parent facet: the dbt run
    assert failed_model["trace_id"] == wrapper["trace_id"]
    assert failed_model["service_name"] == "dbt" and failed_model["error_type"] == "failed"
    assert failed_model["attributes"]["openlineage.job.type"] == "MODEL"
    updates = {(row["dataset"], row["status"]) for row in read_tables(location).rows("dataset_status")}
    # The failed model's FAIL event has no outputs (dbt-ol's artifact mode): only the built models update.
    assert updates == {
        ("duckdb://target/shop.duckdb/shop.main.orders", "SUCCESS"),
        ("duckdb://target/shop.duckdb/shop.main.daily_revenue", "SUCCESS"),
    }


def test_real_dbt_ol_structured_log_events_carry_the_error_text(tmp_path, capsys, read_tables):
    location = str(tmp_path / "datasink")
    replay(capsys, location, FIXTURES / "dbt" / "dbt-ol-run-structured-logs.jsonl")
    runs = read_tables(location).rows("job_runs")
    failed = {row["job_name"]: row for row in runs if row["status"] == "FAILED"}

    assert set(failed) == {"dbt-run-shop", "model.shop.order_status", "model.shop.order_status.sql.2"}
    assert failed["model.shop.order_status"]["error_message"].startswith("Runtime Error in model order_status")
    assert "Conversion Error" in failed["model.shop.order_status"]["error_message"]
    statement = failed["model.shop.order_status.sql.2"]
    assert statement["error_type"] == "dbt_common.exceptions.base.DbtRuntimeError"
    assert statement["parent_span_id"] == failed["model.shop.order_status"]["span_id"]
    assert failed["dbt-run-shop"]["error_message"].startswith("Command `dbt run` failed")
    updates = {(row["dataset"], row["status"]) for row in read_tables(location).rows("dataset_status")}
    assert ("duckdb://target/shop.duckdb/shop.main.order_status", "FAILED") in updates


def test_airflow_provider_events_give_each_try_its_attempt_and_error(tmp_path, capsys, read_tables):
    location = str(tmp_path / "datasink")
    replay(capsys, location, FIXTURES / "airflow" / "etl_orders_retry.jsonl")
    runs = {(row["job_name"], row["attempt"], row["status"]): row for row in read_tables(location).rows("job_runs")}

    assert set(runs) == {
        ("etl_orders", 1, "STARTED"),
        ("etl_orders", 1, "SUCCESS"),
        ("etl_orders.extract_orders", 1, "STARTED"),
        ("etl_orders.extract_orders", 1, "SUCCESS"),
        ("etl_orders.load_orders", 1, "STARTED"),
        ("etl_orders.load_orders", 1, "FAILED"),
        ("etl_orders.load_orders", 2, "STARTED"),
        ("etl_orders.load_orders", 2, "SUCCESS"),
    }
    dag, failed, retried = (
        runs["etl_orders", 1, "SUCCESS"],
        runs["etl_orders.load_orders", 1, "FAILED"],
        runs["etl_orders.load_orders", 2, "SUCCESS"],
    )
    assert failed["error_message"] == "could not serialize access due to concurrent update"
    assert failed["error_type"] == "psycopg2.errors.SerializationFailure"
    for row in (dag, failed, retried):
        assert row["run_type"] == "scheduled" and row["service_name"] == "Airflow"
        assert row["logical_date"] == dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)
        assert row["attributes"]["openlineage.airflow.run_id"] == "scheduled__2026-11-27T00:00:00+00:00"
        assert row["trace_id"] == dag["trace_id"]  # the DAG run's id: its tasks share it
        assert row["attributes"]["openlineage.job.namespace"] == "airflow-prod"
    assert failed["parent_span_id"] == dag["span_id"] == retried["parent_span_id"]
    # The terminal events tell the start: a try's duration, a DAG run's start date.
    assert retried["duration_ms"] == 12_250 and failed["duration_ms"] == 3_500
    assert dag["start_time"] == dt.datetime(2026, 11, 28, 0, 0, 1, 204000, tzinfo=dt.timezone.utc)
    assert retried["records_processed"] == 1200
    updates = sorted(
        (row["updated_at"], row["status"], row["records_written"])
        for row in read_tables(location).rows("dataset_status")
    )
    assert [(status, written) for _, status, written in updates] == [("FAILED", None), ("SUCCESS", 1200)]


def test_spark_events_count_running_and_take_row_counts_and_the_jvm_error(tmp_path, capsys, read_tables):
    location = str(tmp_path / "datasink")
    out = replay(capsys, location, FIXTURES / "spark" / "daily_sessions.jsonl")
    assert "5 OpenLineage event(s)" in out and "(4 job_runs," in out  # RUNNING makes no row
    runs = {row["status"]: row for row in read_tables(location).rows("job_runs") if row["status"] != "STARTED"}
    assert runs["SUCCESS"]["records_processed"] == 5_000_000 and runs["SUCCESS"]["service_name"] == "spark"
    assert runs["FAILED"]["error_type"] == "org.apache.spark.SparkException"
    assert runs["FAILED"]["error_message"].startswith("Job aborted due to stage failure")
    (success,) = [row for row in read_tables(location).rows("dataset_status") if row["status"] == "SUCCESS"]
    # lifecycleStateChange OVERWRITE: the dataset holds exactly what the run wrote.
    assert success["dataset"] == "s3://lake/curated/sessions" and success["record_count"] == 5_000_000


# --- replay of the client's file transport, and the views --------------------------------------------------


def test_replay_of_the_file_transports_output_in_each_of_its_modes(tmp_path, capsys, read_tables):
    run_id, other = str(generate_new_uuid()), str(generate_new_uuid())
    events = [
        RunEvent(
            eventType=RunState.START, eventTime=iso(now()), run=Run(runId=run_id), job=Job(namespace="n", name="a")
        ),
        RunEvent(
            eventType=RunState.COMPLETE, eventTime=iso(now()), run=Run(runId=run_id), job=Job(namespace="n", name="a")
        ),
    ]
    appended = tmp_path / "append" / "events.jsonl"
    appended.parent.mkdir()
    one_file_each = tmp_path / "each"
    one_file_each.mkdir()
    debug = tmp_path / "debug"
    debug.mkdir()
    for config in (
        FileConfig(log_file_path=str(appended), append=True),  # JSON Lines
        FileConfig(log_file_path=str(one_file_each / "ol")),  # one file per event, one line each
        FileConfig(log_file_path=str(debug / "ol"), debug_mode=True),  # one indented event per file
    ):
        client = OpenLineageClient(transport=FileTransport(config))
        for one in events:
            client.emit(one)
    client.emit(
        RunEvent(eventType=RunState.ABORT, eventTime=iso(now()), run=Run(runId=other), job=Job(namespace="n", name="b"))
    )
    files = [appended, *sorted(one_file_each.iterdir()), *sorted(debug.iterdir())]
    assert (debug / os.listdir(debug)[0]).read_text().startswith("{\n")

    location = str(tmp_path / "datasink")
    out = replay(capsys, location, *files)
    assert "7 OpenLineage event(s)" in out and "0 bad line(s)" in out
    rows = read_tables(location).rows("job_runs")
    assert sorted((row["job_name"], row["status"]) for row in rows) == [("a", "STARTED")] * 3 + [
        ("a", "SUCCESS")
    ] * 3 + [("b", "FAILED")]
    with local.connect(location) as con:
        latest = con.execute("select job_name, status, error_type from job_runs_latest order by job_name").fetchall()
    assert latest == [("a", "SUCCESS", None), ("b", "FAILED", "aborted")]


def test_format_flag_and_detection_per_line(tmp_path, capsys):
    run_id = str(generate_new_uuid())
    lines = write_lines(tmp_path / "mixed.jsonl", [event(RunState.START, now(), run_id), {"resourceSpans": []}])
    location = str(tmp_path / "datasink")
    out = replay(capsys, location, lines)
    assert "read 0 span(s) and 1 OpenLineage event(s) from 2 line(s)" in out and "0 bad line(s)" in out
    # Read as OTLP, the event is an object without resourceSpans: empty trace data, as the OTLP decoder reads it.
    out = replay(capsys, location, lines, args=("--format", "otlp"))
    assert "read 0 span(s) from 2 line(s)" in out and "(0 job_runs," in out
    out = replay(capsys, location, lines, args=("--format", "openlineage"))
    assert "mixed.jsonl:2: not an OpenLineage run event: eventTime: missing" in out
    bad = write_lines(tmp_path / "bad.jsonl", [{**event(RunState.START, now(), run_id), "eventType": "DONE"}])
    assert "bad.jsonl:1: not an OpenLineage run event: eventType: unknown 'DONE'" in replay(capsys, location, bad)


def test_out_of_order_and_duplicate_start_and_complete_collapse_in_the_views(tmp_path, capsys):
    run_id, first, second = str(generate_new_uuid()), str(generate_new_uuid()), str(generate_new_uuid())
    started = now()
    start = event(RunState.START, started, run_id)
    complete = event(RunState.COMPLETE, started + dt.timedelta(minutes=2), run_id, rows=10)
    # Retries by try number: Airflow gives each try its own run id and try number.
    try_1 = event(RunState.FAIL, started, first, job="flaky", error="boom")
    try_2 = event(RunState.COMPLETE, started + dt.timedelta(minutes=5), second, job="flaky", rows=3)
    try_2["run"]["facets"]["airflow"] = {"taskInstance": {"try_number": 2}}
    try_1["run"]["facets"]["airflow"] = {"taskInstance": {"try_number": 1}}
    location = str(tmp_path / "datasink")
    # COMPLETE before START, each twice, in two files replayed twice.
    replay(capsys, location, write_lines(tmp_path / "a.jsonl", [complete, try_2, start]))
    replay(capsys, location, write_lines(tmp_path / "b.jsonl", [start, complete, try_1]))
    replay(capsys, location, tmp_path / "a.jsonl", tmp_path / "b.jsonl")

    with local.connect(location) as con:
        runs = con.execute(
            "select job_name, run_id, attempt, status, start_time, end_time, duration_ms from job_runs_latest "
            "order by job_name, attempt"
        ).fetchall()
        datasets = con.execute("select dataset, last_status, last_run_id from dataset_status_latest").fetchall()
        failures = con.execute("select job_name, current_streak from recurring_failures").fetchall()
    assert runs == [
        ("flaky", first, 1, "FAILED", None, started, None),
        ("flaky", second, 2, "SUCCESS", None, started + dt.timedelta(minutes=5), None),
        # The start from START, the end from COMPLETE, the duration from both.
        ("load_orders", run_id, 1, "SUCCESS", started, started + dt.timedelta(minutes=2), 120_000),
    ]
    assert datasets == [(f"{WAREHOUSE}/shop.public.orders", "SUCCESS", second)]
    assert failures == [("flaky", 0)]  # the retry succeeded
