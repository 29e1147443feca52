"""Mapping profiles: Airflow's, CI/CD semantic-convention and user-mapped spans become job runs.

Spans are made with the real SDK, with the names, attributes and statuses those systems set (Airflow 3's
``dag_run.*``/``task_run.*`` spans, Airflow 2.10's unprefixed ones, the ``cicd.pipeline.*`` conventions),
then go through the exporter with the profile and are read back from Parquet.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_datasink import local
from otel_datasink.exporter import DatasinkSpanExporter
from otel_datasink.mapping import map_records
from otel_datasink.otlp import records_from_protobuf
from otel_datasink.profiles import ProfileError, job_keys_of, load_profile
from otel_datasink.sdk import from_readable_span

T0 = 1_780_000_000_000_000_000  # ns, 2026-05-28
INGESTED_AT = 1_780_000_100_000


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).astimezone(timezone.utc).timestamp() * 1000)


def _finished(emit, resource=None) -> list[ReadableSpan]:
    """The SDK spans ``emit(tracer)`` ends."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {"service.name": "scheduler"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    emit(provider.get_tracer("test"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def _export(location, profile, emit, resource=None):
    """Exports the spans of ``emit(tracer)`` through a DatasinkSpanExporter using ``profile``."""
    exporter = DatasinkSpanExporter(location, profile=profile)
    assert exporter.export(_finished(emit, resource)).name == "SUCCESS"


def _map(profile, emit, resource=None):
    """The job_runs rows the profile makes of the spans of ``emit(tracer)``."""
    spans = _finished(emit, resource)
    return map_records([from_readable_span(s) for s in spans], load_profile(profile))["job_runs"]


def _span(tracer, name, attributes, status=None, start=T0, end=T0 + 5_000_000_000, kind=SpanKind.INTERNAL):
    span = tracer.start_span(name, attributes=attributes, start_time=start, kind=kind)
    if status is not None:
        span.set_status(status)
    span.end(end_time=end)
    return span


def _runs(read_tables, location):
    return {row["job_name"]: row for row in read_tables(location).rows("job_runs")}


# --- airflow 3 -----------------------------------------------------------------------------------------


def _airflow3_dag_run(tracer, failed=False):
    # As airflow-core's DagRun._emit_dagrun_span sets them.
    _span(
        tracer,
        "dag_run.ingest_orders",
        {
            "airflow.dag_id": "ingest_orders",
            "airflow.dag_run.run_id": "backfill__2026-05-01T00:00:00+00:00",
            "airflow.dag_run.start_date": "2026-05-28 00:00:01.000000+00:00",
            "airflow.dag_run.end_date": "2026-05-28 00:00:05.000000+00:00",
            "airflow.dag_run.queued_at": "2026-05-28 00:00:00.500000+00:00",
            "airflow.dag_run.logical_date": "2026-05-01 00:00:00+00:00",
        },
        Status(StatusCode.ERROR if failed else StatusCode.OK),
    )


def _airflow3_task_run(tracer, task_id, try_number, state, ti_id):
    # As the API server's task_run span: status OK for success, ERROR otherwise.
    _span(
        tracer,
        f"task_run.{task_id}",
        {
            "airflow.dag_id": "ingest_orders",
            "airflow.task_id": task_id,
            "airflow.dag_run.run_id": "scheduled__2026-05-27T00:00:00+00:00",
            "airflow.task_instance.try_number": try_number,
            "airflow.task_instance.map_index": -1,
            "airflow.task_instance.state": state,
            "airflow.task_instance.id": ti_id,
        },
        Status(StatusCode.OK if state == "success" else StatusCode.ERROR),
    )


def _airflow3_worker(tracer, task_id):
    # The worker's span of the same task instance: same identity attributes, no state, unset status.
    _span(
        tracer,
        f"worker.{task_id}",
        {
            "airflow.dag_id": "ingest_orders",
            "airflow.task_id": task_id,
            "airflow.dag_run.run_id": "scheduled__2026-05-27T00:00:00+00:00",
            "airflow.task_instance.try_number": 1,
            "airflow.task_instance.map_index": -1,
        },
    )


def test_airflow3_dag_run_span_is_a_run_of_the_dag_with_its_logical_date_and_run_type(local_location, read_tables):
    _export(local_location, "airflow", _airflow3_dag_run)
    run = _runs(read_tables, local_location)["ingest_orders"]
    assert run["status"] == "SUCCESS"
    assert run["logical_date"] == datetime(2026, 5, 1, tzinfo=timezone.utc)
    assert run["run_type"] == "backfill"
    assert run["run_id"] == run["attributes"]["airflow.dag_run.run_id"] == "backfill__2026-05-01T00:00:00+00:00"


def test_airflow3_failed_dag_run_is_failed_from_span_status(local_location, read_tables):
    _export(local_location, "airflow", lambda tracer: _airflow3_dag_run(tracer, failed=True))
    assert _runs(read_tables, local_location)["ingest_orders"]["status"] == "FAILED"


def _airflow3_retried_task(tracer):
    # Airflow gives the next try's task instance id to the span of a try that goes up for retry.
    _airflow3_task_run(tracer, "extract", 1, "up_for_retry", "0196-ti-try-2")
    _airflow3_task_run(tracer, "extract", 2, "success", "0196-ti-try-2")
    _airflow3_worker(tracer, "extract")


def test_airflow3_task_tries_are_separate_runs_named_dag_dot_task_with_attempt_and_state(local_location, read_tables):
    _export(local_location, "airflow", _airflow3_retried_task)
    rows = sorted(read_tables(local_location).rows("job_runs"), key=lambda row: row["attempt"])
    assert [(r["job_name"], r["attempt"], r["status"], r["error_type"]) for r in rows] == [
        ("ingest_orders.extract", 1, "FAILED", "up_for_retry"),
        ("ingest_orders.extract", 2, "SUCCESS", None),
    ]
    assert [r["run_id"] for r in rows] == [
        f"ingest_orders/scheduled__2026-05-27T00:00:00+00:00/extract/{attempt}" for attempt in (1, 2)
    ]
    assert all(r["run_type"] == "scheduled" for r in rows)
    # The logical date of a scheduled run, read from the end of its run id.
    assert all(r["logical_date"] == datetime(2026, 5, 27, tzinfo=timezone.utc) for r in rows)


def test_airflow3_skipped_task_is_not_a_failure(local_location, read_tables):
    _export(local_location, "airflow", lambda tracer: _airflow3_task_run(tracer, "notify", 1, "skipped", "ti-9"))
    assert _runs(read_tables, local_location)["ingest_orders.notify"]["status"] == "SUCCESS"


def _airflow3_non_run_spans(tracer):
    _airflow3_worker(tracer, "extract")
    _span(tracer, "trigger.extract", {"airflow.trigger.name": "T", "airflow.dag_id": "d", "airflow.task_id": "t"})
    _span(tracer, "scheduler_job_loop", {"category": "scheduler", "loop_count": 3})


def test_airflow_profile_ignores_worker_trigger_and_scheduler_spans():
    assert _map("airflow", _airflow3_non_run_spans) == []


def _airflow30_spans(tracer):
    # As Airflow 3.0's DagRun.set_dagrun_span_attrs and SchedulerJobRunner.set_ti_span_attrs set them.
    _span(
        tracer,
        "etl",
        {
            "airflow.category": "DAG runs",
            "airflow.dag_run.dag_id": "etl",
            "airflow.dag_run.logical_date": "2026-05-27 00:00:00+00:00",
            "airflow.dag_run.run_id": "manual__2026-05-27T00:00:00+00:00",
            "airflow.dag_run.state": "failed",
            "airflow.dag_run.run_type": "manual",
            "airflow.dag_run.error": True,
        },
    )
    _span(
        tracer,
        "transform",
        {
            "airflow.category": "scheduler",
            "airflow.task.task_id": "transform",
            "airflow.task.dag_id": "etl",
            "airflow.task.state": "success",
            "airflow.task.error": False,
            "airflow.task.try_number": 2,
            "airflow.task.logical_date": "2026-05-27 00:00:00+00:00",
        },
    )


def test_airflow30_dag_run_and_scheduler_task_spans_map_from_their_prefixed_attributes():
    rows = {row["job_name"]: row for row in _map("airflow", _airflow30_spans)}
    assert (rows["etl"]["status"], rows["etl"]["run_type"], rows["etl"]["error_type"]) == ("FAILED", "manual", "failed")
    transform = rows["etl.transform"]
    assert (transform["status"], transform["attempt"]) == ("SUCCESS", 2)
    assert transform["logical_date"] == _ms("2026-05-27T00:00:00+00:00")


# --- airflow 2.10 --------------------------------------------------------------------------------------


def _airflow210_dag_run(tracer):
    # As Airflow 2.10's DagRun.update_state sets them; the span status stays unset.
    _span(
        tracer,
        "nightly_report",
        {
            "category": "DAG runs",
            "dag_id": "nightly_report",
            "execution_date": "2026-05-27 00:00:00+00:00",
            "run_id": "scheduled__2026-05-27T00:00:00+00:00",
            "queued_at": "2026-05-28 00:00:00+00:00",
            "run_start_date": "2026-05-28 00:00:01+00:00",
            "run_end_date": "2026-05-28 00:00:05+00:00",
            "run_duration": "4.0",
            "state": "failed",
            "external_trigger": "False",
            "run_type": "scheduled",
            "data_interval_start": "2026-05-27 00:00:00+00:00",
            "data_interval_end": "2026-05-28 00:00:00+00:00",
            "dag_hash": "abc",
            "conf": "{}",
            "error": True,
        },
    )


def test_airflow210_dag_run_span_maps_unprefixed_attributes_and_failed_state(local_location, read_tables):
    _export(local_location, "airflow", _airflow210_dag_run)
    run = _runs(read_tables, local_location)["nightly_report"]
    assert (run["status"], run["error_type"], run["run_type"]) == ("FAILED", "failed", "scheduled")
    assert run["logical_date"] == datetime(2026, 5, 27, tzinfo=timezone.utc)


def _airflow210_task(tracer):
    attributes = {
        "category": "scheduler",
        "task_id": "load",
        "dag_id": "nightly_report",
        "state": "failed",
        "error": True,
        "execution_date": "2026-05-27 00:00:00+00:00",
        "try_number": 3,
        "hostname": "worker-1",
        "operator": "PythonOperator",
    }
    _span(tracer, "load", attributes, end=T0 + 9_000_000_000)


def test_airflow210_task_span_and_failure_span_give_one_failed_run_with_the_error_message(local_location, read_tables):
    scheduler_span = _finished(_airflow210_task)[0]
    # Airflow 2.10 derives a task instance's span ids from it: the worker's failure span has the same ones.
    failure = ReadableSpan(
        name="load",
        context=scheduler_span.context,
        attributes={
            "error": "true",
            "error_msg": "psycopg2.OperationalError: connection refused",
            "category": "DAG runs",
            "task_id": "load",
            "dag_id": "nightly_report",
            "state": "failed",
            "execution_date": "2026-05-27 00:00:00+00:00",
        },
        start_time=T0,
        end_time=T0 + 8_000_000_000,
        resource=scheduler_span.resource,
    )
    DatasinkSpanExporter(local_location, profile="airflow").export([scheduler_span, failure])
    rows = read_tables(local_location).rows("job_runs")
    assert {row["run_id"] for row in rows} == {rows[0]["run_id"]}
    assert {row["job_name"] for row in rows} == {"nightly_report.load"}
    assert all(row["status"] == "FAILED" for row in rows)
    assert "psycopg2.OperationalError: connection refused" in {row["error_message"] for row in rows}
    assert 3 in {row["attempt"] for row in rows}


# --- cicd ----------------------------------------------------------------------------------------------


def _cicd_pipeline_spans(tracer):
    _span(
        tracer,
        "RUN Build and Test",
        {
            "cicd.pipeline.name": "Build and Test",
            "cicd.pipeline.run.id": "120912",
            "cicd.pipeline.result": "failure",
            "cicd.pipeline.action.name": "RUN",
            "error.type": "test_failed",
        },
        Status(StatusCode.ERROR),
        kind=SpanKind.SERVER,
    )
    _span(
        tracer,
        "go-test",
        {
            "cicd.pipeline.task.name": "go-test",
            "cicd.pipeline.task.run.id": "12097",
            "cicd.pipeline.task.run.result": "timeout",
            "cicd.pipeline.task.type": "test",
        },
    )
    _span(
        tracer,
        "lint",
        {
            "cicd.pipeline.task.name": "lint",
            "cicd.pipeline.task.run.id": "12098",
            "cicd.pipeline.task.run.result": "success",
        },
    )
    _span(tracer, "go vet ./...", {"process.command": "go"})  # a step inside a task: not a run


def test_cicd_pipeline_and_task_runs_map_results_to_status(local_location, read_tables):
    # The pipeline name and run id of a run's task spans come from the CICD pipeline run resource.
    resource = {"service.name": "ci", "cicd.pipeline.name": "Build and Test", "cicd.pipeline.run.id": "120912"}
    _export(local_location, "cicd", _cicd_pipeline_spans, resource=resource)
    runs = _runs(read_tables, local_location)
    assert set(runs) == {"Build and Test", "Build and Test.go-test", "Build and Test.lint"}
    pipeline = runs["Build and Test"]
    assert (pipeline["run_id"], pipeline["status"], pipeline["error_type"]) == ("120912", "FAILED", "test_failed")
    timed_out = runs["Build and Test.go-test"]
    assert (timed_out["run_id"], timed_out["status"], timed_out["error_type"]) == ("120912.12097", "FAILED", "timeout")
    assert runs["Build and Test.lint"]["status"] == "SUCCESS"


def _cicd_skipped_task_and_http_span(tracer):
    _span(tracer, "docs", {"cicd.pipeline.task.name": "docs", "cicd.pipeline.task.run.result": "skip"})
    _span(tracer, "http GET", {"http.request.method": "GET"})


def test_cicd_skipped_task_is_success_and_spans_without_cicd_attributes_are_ignored():
    assert [(r["job_name"], r["status"]) for r in _map("cicd", _cicd_skipped_task_and_http_span)] == [
        ("docs", "SUCCESS")
    ]


# --- every profile keeps contract spans ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "airflow", "cicd"])
def test_every_builtin_profile_still_takes_spans_that_follow_the_contract(name):
    rows = _map(name, lambda tracer: _span(tracer, "ingest", {"job.name": "ingest", "job.run.attempt": 2}))
    assert [(r["job_name"], r["attempt"]) for r in rows] == [("ingest", 2)]


def test_unknown_profile_name_fails_when_the_exporter_starts(local_location):
    with pytest.raises(ProfileError, match="unknown mapping profile 'airflw'"):
        DatasinkSpanExporter(local_location, profile="airflw")


# --- user mapping files --------------------------------------------------------------------------------

MAPPING = """\
# ETL runner spans: one span per pipeline run.
[[rule]]
select.name = "etl *"
select.has_attributes = ["etl.pipeline"]
select.resource = { "service.name" = "etl-runner" }
columns.job_name = { attribute = "etl.pipeline" }
columns.run_id = { attribute = "etl.run" }
columns.attempt = { attribute = "etl.try" }
columns.dataset = { resource = "etl.target" }
columns.job_type = { constant = "batch" }
failed_when = { attribute = "etl.outcome", values = ["failed", "aborted"] }

[[rule]]
select.name_regex = "load_[a-z]+"
columns.job_name = { constant = "loader" }
"""


def _etl_spans(tracer):
    _span(tracer, "etl orders", {"etl.pipeline": "orders", "etl.run": "r-17", "etl.try": "2", "etl.outcome": "ok"})
    _span(tracer, "etl customers", {"etl.pipeline": "customers", "etl.run": "r-18", "etl.outcome": "aborted"})
    _span(tracer, "etl orphan", {"etl.run": "r-19"})  # lacks etl.pipeline: not selected
    _span(tracer, "load_refunds", {})
    _span(tracer, "load_2026", {})  # the regex must match the whole name


def test_mapping_file_selects_spans_and_maps_columns_from_attribute_resource_and_constant(
    tmp_path, local_location, read_tables
):
    mapping = tmp_path / "etl.toml"
    mapping.write_text(MAPPING)

    _export(
        local_location, str(mapping), _etl_spans, resource={"service.name": "etl-runner", "etl.target": "warehouse"}
    )
    runs = _runs(read_tables, local_location)
    assert set(runs) == {"orders", "customers", "loader"}
    orders = runs["orders"]
    assert (orders["run_id"], orders["attempt"], orders["dataset"], orders["job_type"], orders["status"]) == (
        "r-17",
        2,
        "warehouse",
        "batch",
        "SUCCESS",
    )
    assert (runs["customers"]["status"], runs["customers"]["error_type"]) == ("FAILED", "aborted")


def test_mapping_file_rule_does_not_select_spans_of_another_resource(tmp_path):
    mapping = tmp_path / "etl.toml"
    mapping.write_text(MAPPING)
    emit = lambda tracer: _span(tracer, "etl orders", {"etl.pipeline": "orders"})  # noqa: E731
    assert _map(str(mapping), emit, resource={"service.name": "other"}) == []
    assert [r["job_name"] for r in _map(str(mapping), emit, resource={"service.name": "etl-runner"})] == ["orders"]


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        (
            """
            [[rule]]
            select.name = "etl *"
            columns.job_name = { attribute = "etl.pipeline" }
            columns.job_nme = { attribute = "x" }
            """,
            "rule[1].columns.job_nme",
            5,
        ),
        (
            """
            [[rule]]
            columns.job_name = { attribute = "a" }

            [[rule]]
            select.name_regex = "etl ("
            columns.job_name = { constant = "b" }
            """,
            "rule[2].select.name_regex",
            6,
        ),
        (
            """
            [[rule]]
            columns.job_name = { attribute = "a", constant = "b" }
            """,
            "rule[1].columns.job_name",
            3,
        ),
        (
            """
            [[rule]]
            select.name = "x"
            """,
            "rule[1].columns",
            2,
        ),
        (
            """
            [[rule]]
            columns.job_name = { atribute = "a" }
            """,
            "rule[1].columns.job_name.atribute",
            3,
        ),
    ],
)
def test_invalid_mapping_file_fails_at_load_naming_key_and_line(tmp_path, text, key, line):
    mapping = tmp_path / "bad.toml"
    mapping.write_text(textwrap.dedent(text))
    with pytest.raises(ProfileError) as raised:
        load_profile(str(mapping))
    message = str(raised.value)
    assert f"line {line}:" in message
    assert key in message


def test_mapping_file_with_a_toml_syntax_error_names_the_line(tmp_path, local_location):
    mapping = tmp_path / "broken.toml"
    mapping.write_text('[[rule]]\ncolumns.job_name = { attribute = "a" }\nselect.name = "unterminated\n')
    with pytest.raises(ProfileError, match=r"not valid TOML.*line 3"):
        DatasinkSpanExporter(local_location, profile=str(mapping))


def test_missing_mapping_file_fails_at_load(tmp_path):
    with pytest.raises(ProfileError, match="cannot read mapping file"):
        load_profile(str(tmp_path / "nope.toml"))


def test_airflow_example_through_the_processor_gives_one_latest_state_per_try(tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "airflow_spans.py"
    location = str(tmp_path / "tables")
    done = subprocess.run(
        [sys.executable, str(example), "--location", location], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    latest = local.connect(location).execute(
        "SELECT job_name, attempt, status, error_type FROM job_runs_latest ORDER BY job_name, attempt"
    )
    assert latest.fetchall() == [
        ("ingest_orders", 1, "SUCCESS", None),
        ("ingest_orders.extract", 1, "FAILED", "up_for_retry"),
        ("ingest_orders.extract", 2, "SUCCESS", None),
        ("ingest_orders.load", 1, "SUCCESS", None),
    ]


# --- the collector's pre-filter: spans a profile cannot take are skipped before decoding ------------------

# Rules that each require attributes: the profile can name its job keys.
ATTRIBUTE_RULES = """\
[[rule]]
select.name = "etl *"
select.has_attributes = ["etl.pipeline"]
columns.job_name = { attribute = "etl.pipeline" }

[[rule]]
select.has_attributes = ["load.table", "load.batch"]
columns.job_name = { attribute = "load.table" }
"""

EVERY_RESOURCE = {
    "service.name": "etl-runner",
    "etl.target": "warehouse",
    "cicd.pipeline.name": "Build and Test",
    "cicd.pipeline.run.id": "120912",
}


def _every_profiles_spans(tracer):
    """The spans of the tests above (runs and non-runs of every profile), a contract span and near misses."""
    for emit in (
        _airflow3_dag_run,
        _airflow3_retried_task,
        _airflow3_non_run_spans,
        _airflow30_spans,
        _airflow210_dag_run,
        _airflow210_task,
        _cicd_pipeline_spans,
        _cicd_skipped_task_and_http_span,
        _etl_spans,
    ):
        emit(tracer)
    _span(tracer, "ingest", {"job.name": "ingest", "job.run.attempt": 2})
    _span(tracer, "load orders", {"load.table": "orders", "load.batch": 7})
    _span(tracer, "dag_run.orphan", {"airflow.dag_run.run_id": "manual__x"})  # a dag_run.* name but no DAG id
    _span(tracer, "Deploy", {"cicd.pipeline.name": "Deploy"})  # a pipeline run that has no result yet
    _span(tracer, "step", {"cicd.pipeline.task.run.id": "1"})  # cicd.* but neither a task nor a pipeline run


@pytest.mark.parametrize("profile", ["contract", "default", "airflow", "cicd", "attribute_rules.toml", "etl.toml"])
def test_collector_pre_filter_skips_spans_but_never_one_the_profile_takes(profile, tmp_path):
    (tmp_path / "attribute_rules.toml").write_text(ATTRIBUTE_RULES)
    (tmp_path / "etl.toml").write_text(MAPPING)
    loaded = load_profile(str(tmp_path / profile) if profile.endswith(".toml") else profile)
    body = encode_spans(_finished(_every_profiles_spans, EVERY_RESOURCE)).SerializeToString()

    every, _, spans = records_from_protobuf(body)
    keys = job_keys_of(loaded)
    kept, _, _ = records_from_protobuf(body, job_keys=keys)  # as the collector decodes under this profile

    expected = map_records(every, loaded, INGESTED_AT)
    assert len(expected["job_runs"]) > (profile != "contract")  # the profile's own runs beside the contract span
    assert map_records(kept, loaded, INGESTED_AT) == expected
    if profile == "etl.toml":  # a rule selects by span name alone: every span must be shown to the profile
        assert keys is None and len(kept) == spans
    else:
        assert len(kept) < spans


def test_mapping_file_names_its_job_keys_only_when_every_rule_requires_attributes(tmp_path):
    (tmp_path / "attribute_rules.toml").write_text(ATTRIBUTE_RULES)
    (tmp_path / "etl.toml").write_text(MAPPING)
    rules = str(tmp_path / "attribute_rules.toml")
    assert job_keys_of(load_profile(f"contract,{rules}")) == {"job.name", "etl.pipeline", "load.table", "load.batch"}
    # Alone, the file adds to every built-in producer: their keys too.
    assert job_keys_of(load_profile(rules)) == job_keys_of(load_profile(f"contract,{rules}")) | job_keys_of(
        load_profile("default")
    )
    assert job_keys_of(load_profile(str(tmp_path / "etl.toml"))) is None


@pytest.mark.parametrize("profile", ["airflow", "default", "contract"])
def test_the_processor_skips_spans_without_the_profiles_job_keys_and_writes_the_others(profile, tmp_path, read_tables):
    from opentelemetry.sdk.trace import TracerProvider

    from otel_datasink import DatasinkSpanProcessor

    processor = DatasinkSpanProcessor(str(tmp_path), profile=profile, schedule_delay=60)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("tests")
    _airflow3_dag_run(tracer)
    _span(tracer, "plain", {"job.name": "contract_job"})
    _span(tracer, "http GET", {"http.method": "GET"})  # carries no job key under any profile
    # Only job spans were queued (a start and an end each): the others cost the job nothing.
    assert len(processor._queue) == (2 if profile == "contract" else 4)
    assert processor.force_flush(5000)
    provider.shutdown()
    expected = {"contract_job"} if profile == "contract" else {"ingest_orders", "contract_job"}
    assert set(_runs(read_tables, str(tmp_path))) == expected


def test_a_misspelt_job_name_column_is_reported_as_unknown_first_then_as_missing(tmp_path):
    mapping = tmp_path / "etl.toml"
    mapping.write_text(
        textwrap.dedent(
            """\
            # ETL runner spans
            [[rule]]
            select.name = "etl *"
            select.has_attributes = ["etl.pipeline"]
            columns.job_nme = { attribute = "etl.pipeline" }
            """
        )
    )
    with pytest.raises(ProfileError) as raised:
        load_profile(str(mapping))
    message = str(raised.value)
    unknown = f"mapping file {mapping}, line 5: rule[1].columns.job_nme: unknown column (expected one of job_name, "
    assert message.startswith(unknown)
    assert message.endswith("; columns.job_name is required")


# --- every producer at once --------------------------------------------------------------------------------


def _unknown_producers_spans(tracer):
    """Spans of a producer no built-in recognises (a Dagster run and step, in attributes of its own)."""
    _span(tracer, "nightly", {"dagster.run.type": "run", "dagster.run.id": "0b1c"})
    _span(tracer, "extract", {"dagster.run.type": "step", "dagster.step.key": "extract"})


def _run_keys(rows):
    return sorted((r["job_name"], r["run_id"], r["attempt"], r["status"], r["error_type"]) for r in rows)


def test_the_default_profile_maps_every_builtin_producers_spans_as_that_producer_alone_does():
    records = [from_readable_span(span) for span in _finished(_every_profiles_spans)]
    together = map_records(records, load_profile("default"), INGESTED_AT)["job_runs"]
    alone = [
        row
        for name in ("contract", "airflow", "cicd")
        for row in map_records(records, load_profile(name), INGESTED_AT)["job_runs"]
    ]
    # Each narrowed profile also takes the contract's span: the default takes it once.
    assert _run_keys(together) == sorted(set(_run_keys(alone)))
    assert {"ingest_orders.extract", "nightly_report", "go-test", "ingest"} <= {r["job_name"] for r in together}


def test_an_unset_or_empty_profile_is_the_default_one():
    every_builtin = load_profile("cicd,contract,prefect,airflow")
    assert load_profile(None) is load_profile("") is load_profile("default") is every_builtin


def test_a_span_with_job_name_is_the_contracts_whatever_producers_attributes_it_carries():
    def emit(tracer):
        _span(tracer, "task_run.load", {"job.name": "mine", "airflow.dag_id": "d", "airflow.task_id": "load"})

    assert [r["job_name"] for r in _map("default", emit)] == ["mine"]


def test_spans_of_a_producer_no_profile_recognises_are_never_runs():
    assert _map("default", _unknown_producers_spans) == []


def test_a_named_profile_narrows_to_its_producer():
    names = {r["job_name"] for r in _map("airflow", _every_profiles_spans)}
    assert "ingest_orders.extract" in names and "go-test" not in names
    assert {r["job_name"] for r in _map("airflow,cicd", _every_profiles_spans)} >= {"ingest_orders.extract", "go-test"}
    assert {r["job_name"] for r in _map("contract", _every_profiles_spans)} == {"ingest"}


def test_a_mapping_file_adds_its_rules_to_the_builtin_producers_unless_names_narrow_them(tmp_path):
    mapping = tmp_path / "etl.toml"
    mapping.write_text(MAPPING)
    resource = {"service.name": "etl-runner"}
    with_builtins = {r["job_name"] for r in _map(str(mapping), _every_profiles_spans, resource=resource)}
    assert {"orders", "loader", "ingest_orders.extract", "go-test", "ingest"} <= with_builtins
    narrowed = {r["job_name"] for r in _map(f"contract,{mapping}", _every_profiles_spans, resource=resource)}
    assert narrowed == {"orders", "customers", "loader", "ingest"}


def test_an_unknown_name_in_a_list_of_profiles_fails_naming_it():
    with pytest.raises(ProfileError, match="unknown mapping profile 'airflw'"):
        load_profile("cicd,airflw")
