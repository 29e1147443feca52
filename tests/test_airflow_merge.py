"""One run, however many producers report it: Airflow 3.3's traces and its OpenLineage events of the same task
tries and DAG runs, replayed into one location with no profile, are one run each in the views.

The payloads are real (``tests/fixtures/airflow_3_3/``, README there): four DAG runs and six task tries, each
reported by a trace span and by OpenLineage START and COMPLETE/FAIL, and Airflow's own record of them (its metadata
DB's ``dag_run``, ``task_instance`` and ``task_instance_history`` rows). The merge rules of ``job_runs_latest`` are
pinned with small synthetic rows too.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from otel_datasink import local
from otel_datasink.cli import main
from otel_datasink.config import Options
from otel_datasink.mapping import map_records
from otel_datasink.openlineage import record_of
from otel_datasink.otlp import records_from_json
from otel_datasink.profiles import airflow_task_run_id, load_profile
from otel_datasink.writer import Writer

FIXTURE = Path(__file__).parent / "fixtures" / "airflow_3_3"
CAPTURED_ON = dt.date(2026, 12, 8)
UTC = dt.timezone.utc
_ISO = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def _shift(value: Any, delta: dt.timedelta) -> Any:
    """``value`` (a parsed JSON document) with every time in it moved by ``delta``: OTLP's ``*UnixNano`` and every
    string that is a whole ISO 8601 date-time (OpenLineage's ``eventTime``, its facets' dates). Ids that embed a
    date (``manual__2026-12-08T01:30:36...``) are not whole date-times and stay as they are."""
    if isinstance(value, dict):
        return {
            key: str(int(item) + delta // dt.timedelta(microseconds=1) * 1000)
            if key.endswith("UnixNano")
            else _shift(item, delta)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_shift(item, delta) for item in value]
    if isinstance(value, str) and _ISO.fullmatch(value):
        return (dt.datetime.fromisoformat(value.replace("Z", "+00:00")) + delta).isoformat()
    return value


def _db_time(text: str, delta: dt.timedelta) -> dt.datetime:
    """A time of Airflow's metadata DB (SQLite: UTC, no zone) moved as the payloads were."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC) + delta


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """Both producers' payloads replayed into one location, no --profile: the connection and the metadata DB.

    The capture's times are moved by whole days to today, so that the run views' windows (relative to today)
    hold them whenever the suite runs; time of day and every interval stay as captured."""
    folder = tmp_path_factory.mktemp("airflow_merge")
    delta = dt.timedelta(days=(dt.datetime.now(UTC).date() - CAPTURED_ON).days)
    files = []
    for name in ("traces.jsonl", "openlineage.jsonl"):
        lines = (FIXTURE / name).read_text().splitlines()
        path = folder / name
        path.write_text("".join(json.dumps(_shift(json.loads(line), delta)) + "\n" for line in lines))
        files.append(str(path))
    location = str(folder / "datasink")
    assert main(["replay", "--location", location, "--no-progress", *files]) == 0
    con = local.connect(location)
    yield con, json.loads((FIXTURE / "metadata.json").read_text()), delta
    con.close()


def _query(con, sql: str, *parameters: Any) -> list[dict[str, Any]]:
    cursor = con.execute(sql, list(parameters))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _ms(moment: dt.datetime) -> dt.datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# --- the real payloads -------------------------------------------------------------------------------------


def test_each_airflow_task_try_is_one_run_matching_the_metadata_db_field_by_field(airflow):
    con, metadata, delta = airflow
    tries = metadata["task_instance"] + metadata["task_instance_history"]
    runs = {
        (row["job_name"], row["run_id"], row["attempt"]): row
        for row in _query(con, "SELECT * FROM job_runs_latest WHERE parent_run_id IS NOT NULL")
    }
    assert len(runs) == len(tries) == 6
    for ti in tries:
        run_id = airflow_task_run_id(ti["dag_id"], ti["run_id"], ti["task_id"], ti["map_index"], ti["try_number"])
        run = runs[f"{ti['dag_id']}.{ti['task_id']}", run_id, ti["try_number"]]
        assert run["status"] == {"success": "SUCCESS", "failed": "FAILED"}[ti["state"]]
        # The trace's start, the earliest: the try was queued then (OpenLineage's START came at execution).
        assert run["start_time"] == _ms(_db_time(ti["queued_dttm"], delta))
        # The latest terminal report: OpenLineage's or the span's, within half a second of Airflow's end.
        end = _db_time(ti["end_date"], delta)
        assert dt.timedelta(0) <= run["end_time"] - _ms(end) < dt.timedelta(milliseconds=500)
        assert run["duration_ms"] == (run["end_time"] - run["start_time"]) // dt.timedelta(milliseconds=1)
        assert (run["parent_job_name"], run["parent_run_id"]) == (ti["dag_id"], ti["run_id"])
        assert run["run_type"] == "manual" and run["owners"] == ["data-eng"]
    # The assets of the second orders_publish run (file://): OpenLineage's inputs and outputs on the run.
    published = runs["orders_publish.publish", "orders_publish/manual__2026-12-08T01:37:39.349560+00:00/publish/1", 1]
    assert published["dataset"].endswith("/data/lake/curated/orders.parquet")
    assert [name.rsplit("/", 1)[-1] for name in published["inputs"]] == ["orders.csv"]
    failed = {job: run for (job, _, _), run in runs.items() if run["status"] == "FAILED"}
    # OpenLineage's exception, on the merged row also where the span's row is the latest state (load's).
    assert {job: (run["error_type"], run["error_message"]) for job, run in failed.items()} == {
        "orders_retry.transform": ("ValueError", "orders feed not ready: 0 rows in raw.orders"),
        "orders_broken.load": ("RuntimeError", "warehouse rejected the load: column amount is NULL in 3 rows"),
    }


def test_each_airflow_dag_run_is_one_run_under_airflows_run_id(airflow):
    con, metadata, delta = airflow
    runs = {row["run_id"]: row for row in _query(con, "SELECT * FROM job_runs_latest WHERE parent_run_id IS NULL")}
    assert len(runs) == len(metadata["dag_run"]) == 4
    for dag_run in metadata["dag_run"]:
        run = runs[dag_run["run_id"]]
        assert (run["job_name"], run["attempt"]) == (dag_run["dag_id"], 1)
        assert run["status"] == {"success": "SUCCESS", "failed": "FAILED"}[dag_run["state"]]
        assert run["start_time"] == _ms(_db_time(dag_run["queued_at"], delta))
        end = _db_time(dag_run["end_date"], delta)
        assert dt.timedelta(0) <= run["end_time"] - _ms(end) < dt.timedelta(milliseconds=500)
    broken = runs["manual__2026-12-08T01:32:14.944846+00:00"]
    assert (broken["error_type"], broken["error_message"]) == ("failed", "task_failure")


def test_a_dag_run_is_found_by_airflows_run_id_in_both_producers_rows(airflow):
    con, _, _ = airflow
    dag_run = "manual__2026-12-08T01:30:36.361030+00:00"
    rows = _query(
        con,
        "SELECT job_name, status, service_name, attributes['openlineage.run_id'] AS openlineage_run_id"
        " FROM job_runs WHERE run_id = ? OR parent_run_id = ? ORDER BY job_name, event_time",
        dag_run,
        dag_run,
    )
    reported = {(row["job_name"], row["status"], row["service_name"]) for row in rows}
    # The DAG run and its three tries, each from the trace (its service) and OpenLineage (service Airflow).
    assert ("orders_retry", "SUCCESS", "airflow-scheduler") in reported
    assert ("orders_retry", "SUCCESS", "Airflow") in reported
    assert ("orders_retry.transform", "FAILED", "airflow-api-server") in reported
    assert ("orders_retry.transform", "FAILED", "Airflow") in reported
    assert len(rows) == 3 + 3 * 3  # the DAG run and each try: its span, START, COMPLETE (or FAIL)
    # OpenLineage's own run id stays in the attributes of its rows.
    uuids = {row["openlineage_run_id"] for row in rows if row["service_name"] == "Airflow"}
    assert len(uuids) == 4 and all(uuid.UUID(value) for value in uuids)


def test_a_failed_try_counts_once_in_recurring_failures_runtime_trend_and_pipeline_runs(airflow):
    con, _, _ = airflow
    streaks = {
        row["job_name"]: row for row in _query(con, "SELECT * FROM recurring_failures WHERE job_name LIKE 'orders_%.%'")
    }
    assert {job: (row["current_streak"], row["recent_failures"]) for job, row in streaks.items()} == {
        "orders_broken.load": (1, 1),
        "orders_retry.transform": (0, 1),  # its retry succeeded
    }
    assert streaks["orders_retry.transform"]["last_error_message"] == "orders feed not ready: 0 rows in raw.orders"
    trend = {
        row["job_name"]: (row["runs"], row["failures"])
        for row in _query(
            con, "SELECT job_name, sum(runs) AS runs, sum(failures) AS failures FROM runtime_trend GROUP BY 1"
        )
    }
    assert trend == {
        "orders_retry": (1, 0),
        "orders_retry.extract": (1, 0),
        "orders_retry.transform": (2, 1),
        "orders_broken": (1, 1),
        "orders_broken.load": (1, 1),
        "orders_publish": (2, 0),
        "orders_publish.publish": (2, 0),
    }
    pipelines = {
        row["parent_run_id"]: row
        for row in _query(con, "SELECT * FROM pipeline_runs WHERE parent_job_name = 'orders_retry'")
    }
    (retry,) = pipelines.values()
    assert (retry["child_runs"], retry["child_jobs"], retry["succeeded"], retry["failed"]) == (3, 2, 2, 1)


def test_a_task_span_names_its_dag_run_as_parent_though_the_dag_runs_span_comes_later():
    # Each request alone, as the collector maps them: a try's span never sees its DAG run's.
    tries = []
    for line in (FIXTURE / "traces.jsonl").read_text().splitlines():
        records, _ = records_from_json(json.loads(line))
        tries += [row for row in map_records(records, load_profile(None))["job_runs"] if "." in row["job_name"]]
    assert len(tries) == 6
    for row in tries:
        dag_id, run_id = row["run_id"].split("/")[:2]
        assert (row["parent_job_name"], row["parent_run_id"]) == (dag_id, run_id)


def test_openlineage_of_airflow_takes_airflows_ids_and_other_events_keep_their_uuid():
    events = [json.loads(line) for line in (FIXTURE / "openlineage.jsonl").read_text().splitlines()]
    fail = next(event for event in events if event["eventType"] == "FAIL" and event["job"]["name"].endswith(".load"))
    record = record_of(fail)
    assert record is not None
    assert record.attributes["job.run.id"] == "orders_broken/manual__2026-12-08T01:32:14.944846+00:00/load/1"
    assert record.attributes["job.parent.run.id"] == "manual__2026-12-08T01:32:14.944846+00:00"
    assert record.attributes["openlineage.run_id"] == fail["run"]["runId"]
    assert record.attributes["openlineage.parent.run_id"] == fail["run"]["facets"]["parent"]["run"]["runId"]
    dag_start = record_of(events[0])
    assert dag_start is not None and dag_start.attributes["job.run.id"] == "manual__2026-12-08T01:30:36.361030+00:00"
    for key in ("airflow", "airflowDagRun"):
        fail["run"]["facets"].pop(key, None)
    plain = record_of(fail)
    assert plain is not None and plain.attributes["job.run.id"] == fail["run"]["runId"]
    assert "openlineage.run_id" not in plain.attributes
    assert plain.attributes["job.parent.run.id"] == fail["run"]["facets"]["parent"]["run"]["runId"]


# --- the merge rules, with small rows --------------------------------------------------------------------


def _runs(location: str, *rows: dict[str, Any]) -> list[dict[str, Any]]:
    """``job_runs_latest`` after writing rows (of job ``j``, run ``r``, attempt 1 unless they say) at ``start``
    and ``end`` seconds before now."""
    now = dt.datetime.now(UTC).replace(microsecond=0)

    def at(seconds: float | None) -> int | None:
        return None if seconds is None else int((now - dt.timedelta(seconds=seconds)).timestamp() * 1000)

    written = []
    for row in rows:
        row = dict(row)
        start, end = at(row.pop("start", None)), at(row.pop("end", None))
        event = end if end is not None else start
        written.append(
            {"job_name": "j", "run_id": "r", "attempt": 1, "event_time": event, "start_time": start, "end_time": end}
            | {"ingested_at": at(0)}
            | row
        )
    Writer(Options.resolve(location)).write({"job_runs": written})
    with local.connect(location) as con:
        return _query(con, "SELECT * FROM job_runs_latest")


def test_a_runs_status_is_its_latest_terminal_rows_and_its_start_the_earliest(tmp_path):
    (run,) = _runs(
        str(tmp_path),
        {"status": "STARTED", "start": 50},  # OpenLineage's START: later than the queued span's start
        {"status": "FAILED", "start": 60, "end": 30, "error_type": "up_for_retry", "service_name": "trace"},
        {"status": "SUCCESS", "end": 20, "service_name": "openlineage"},
    )
    assert (run["status"], run["service_name"]) == ("SUCCESS", "openlineage")
    assert run["end_time"] - run["start_time"] == dt.timedelta(seconds=40)
    assert run["duration_ms"] == 40_000  # the latest row tells none: from the earliest start to its end
    assert (run["error_type"], run["error_message"]) == (None, None)  # a success takes no other row's error


def test_a_failed_runs_error_comes_with_its_type_from_the_row_that_has_the_message(tmp_path):
    runs = _runs(
        str(tmp_path),
        {"status": "FAILED", "end": 20, "error_type": "ValueError", "error_message": "no rows"},
        {"status": "FAILED", "start": 60, "end": 10, "error_type": "failed"},  # the span: later, state only
        # Another run: its latest state's own message (and type) wins over an earlier row's.
        {"run_id": "k", "status": "FAILED", "end": 20, "error_type": "ValueError", "error_message": "earlier"},
        {"run_id": "k", "status": "FAILED", "end": 10, "error_type": "KeyError", "error_message": "latest"},
    )
    spanned, own = sorted(runs, key=lambda run: run["run_id"], reverse=True)
    assert spanned["end_time"] - spanned["start_time"] == dt.timedelta(seconds=50)
    assert (spanned["error_type"], spanned["error_message"]) == ("ValueError", "no rows")
    assert (own["error_type"], own["error_message"]) == ("KeyError", "latest")


def test_a_runs_dataset_and_records_come_from_whichever_row_has_them(tmp_path):
    (run,) = _runs(
        str(tmp_path),
        {"status": "STARTED", "start": 50, "dataset": "s3://lake/orders"},  # OpenLineage's START names outputs
        {"status": "SUCCESS", "end": 30, "records_processed": 1200},
        {"status": "SUCCESS", "start": 60, "end": 10},  # the span: the latest state, neither
    )
    assert (run["dataset"], run["records_processed"]) == ("s3://lake/orders", 1200)


def test_rows_of_one_millisecond_give_one_answer_whatever_their_order(tmp_path):
    rows = [
        {"status": "FAILED", "end": 10, "error_type": "failed", "service_name": "span"},
        {"status": "STARTED", "start": 30, "dataset": "b"},
        {"status": "STARTED", "start": 30, "dataset": "a"},
    ]
    answers = {
        tuple(
            (run["dataset"], run["error_type"])
            for run in _runs(str(tmp_path / str(order)), *(rows if order else rows[::-1]))
        )
        for order in (0, 1)
    }
    assert answers == {(("b", "failed"),)}
