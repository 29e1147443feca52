"""The views on DuckDB over rows the real pipeline wrote, for hand-built scenarios with chosen times."""

from __future__ import annotations

import dataclasses
import datetime
import json
import random

import duckdb
import pytest
import sqlglot
from job_spans import DAY_NS, HOUR_NS, MINUTE_NS, job_span, now_ns, started, write_spans

from otel_datasink import catalog, local
from otel_datasink.config import Options
from otel_datasink.writer import Writer

SECOND_NS = 1_000_000_000


def _iso(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc).isoformat()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Writes every scenario in three flushes (the second repeats rows, the third brings late STARTED rows)."""
    location = str(tmp_path_factory.mktemp("views") / "datasink")
    n = now_ns()
    spans = []
    duplicated = []
    late_started = []

    def run(job, end_ns, minutes=5, **kwargs):
        span = job_span(job, end_ns - minutes * MINUTE_NS, end_ns, **kwargs)
        spans.append(span)
        return span

    # --- freshness -------------------------------------------------------------------------------------
    run("load_orders", n - 2 * HOUR_NS, dataset="orders", updates=[dict(name="orders", record_count=900)])
    orders = run(
        "load_orders",
        n - 30 * MINUTE_NS - 30 * SECOND_NS,
        updates=[dict(name="orders", record_count=1000, freshness_sla_minutes=60)],
    )
    duplicated.append(orders)
    run("load_customers", n - 3 * HOUR_NS, updates=[dict(name="customers", freshness_sla_minutes=60)])
    run("load_events", n - 5 * HOUR_NS, updates=[dict(name="events", freshness_sla_minutes=120)])
    # A backfill of data from ten days ago, just now: the dataset's data is no newer than five hours.
    run(
        "load_events",
        n - MINUTE_NS,
        dataset="events",
        run_type="backfill",
        logical_date=_iso(n - 10 * DAY_NS),
    )
    run("load_archive", n - 10 * DAY_NS, dataset="archive")
    run("doomed", n - HOUR_NS, dataset="broken_ds", failed=True)
    # Past the 30 days of job_runs the run views read, within the 400 of dataset_status the dataset views read.
    run("load_ancient", n - 40 * DAY_NS, dataset="ancient")
    # A daily dataset whose job stopped two months ago: it must still be listed, as stale.
    run("load_forgotten", n - 60 * DAY_NS, updates=[dict(name="forgotten", freshness_sla_minutes=24 * 60)])
    run("load_prehistoric", n - 500 * DAY_NS, dataset="prehistoric")

    # --- failures --------------------------------------------------------------------------------------
    for hours, failed in ((4, True), (3, True), (2, True), (1, False)):
        span = run("flaky", n - hours * HOUR_NS, failed=failed, error="TimeoutError")
        late_started.append(span)
        if hours == 3:
            duplicated.append(span)
    for hours, failed in ((5, False), (4, True), (3, True), (2, True)):
        span = run("broken", n - hours * HOUR_NS, failed=failed, error=f"Error{hours}")
        duplicated.append(span)
    for hours in (3, 2, 1):
        run("steady", n - hours * HOUR_NS)

    # --- volume ----------------------------------------------------------------------------------------
    noise = (-20, 10, 5, -5, 15, -10, 0, 20, -15, 5, -5, 10, 0)
    for day, delta in zip(range(1, 14), noise, strict=True):
        span = run("ingest", n - day * DAY_NS - HOUR_NS, records=1000 + delta, run_id=f"ingest-{day}")
        if day % 3 == 0:
            duplicated.append(span)
    run("ingest", n - DAY_NS * 5 // 2, records=10, run_id="ingest-drop")
    run("ingest", n - DAY_NS * 3 // 2, records=1_000_000, run_id="ingest-backfill", run_type="backfill")
    duplicated.append(run("ingest", n - DAY_NS // 2, records=5000, run_id="ingest-spike"))
    for day in range(1, 6):
        run("young", n - day * DAY_NS - HOUR_NS, records=1000 + day)
    run("young", n - HOUR_NS, records=50_000)
    for day in range(1, 9):
        run("constant", n - day * DAY_NS - HOUR_NS, records=500)
    run("constant", n - HOUR_NS, records=501, run_id="constant-off-by-one")

    # --- runtime trend ---------------------------------------------------------------------------------
    today = n - n % DAY_NS
    yesterday_noon = today - DAY_NS // 2
    for minutes in range(1, 11):
        run("trend_job", yesterday_noon + minutes * HOUR_NS // 10, minutes=minutes)
    run("trend_job", yesterday_noon, minutes=30, failed=True)
    run("trend_job", yesterday_noon + 2 * HOUR_NS, minutes=100, run_type="backfill")
    # Starts half a second before midnight, ends after: a run of the day it started.
    before_midnight = today - DAY_NS - SECOND_NS // 2
    spans.append(job_span("night_job", before_midnight, before_midnight + 30 * SECOND_NS))

    # --- hung runs -------------------------------------------------------------------------------------
    for day in range(1, 6):
        run("slow", n - day * DAY_NS, minutes=10)
        run("long", n - day * DAY_NS, minutes=60)
    hung = [
        job_span("slow", n - 90 * MINUTE_NS - 10 * SECOND_NS, None, run_id="slow-hung"),
        job_span("slow", n - 20 * MINUTE_NS, None, run_id="slow-running"),
        job_span("long", n - 90 * MINUTE_NS, None, run_id="long-running"),
        job_span("new_job", n - 61 * MINUTE_NS, None, run_id="new-hung"),
    ]
    # Two spans of one run (job, run_id and attempt alike: a scheduler that retries without counting attempts):
    # the first only started, the second succeeded. The run takes the terminal state and the earliest start.
    retry_start = n - 3 * HOUR_NS
    hung.append(job_span("retried", retry_start, None, run_id="retry-1"))
    retried = run("retried", n - 2 * HOUR_NS, minutes=30, run_id="retry-1")

    write_spans(location, spans + hung)
    write_spans(location, duplicated)
    write_spans(location, [started(span) for span in late_started + [retried]])
    return {"location": location, "now": n, "today": today, "retry_start": retry_start}


@pytest.fixture(scope="module")
def con(scenario):
    connection = local.connect(scenario["location"])
    yield connection
    connection.close()


def rows(con, query: str) -> list[dict]:
    relation = con.sql(query)
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def by(key: str, items: list[dict]) -> dict:
    return {item[key]: item for item in items}


def test_job_runs_latest_has_one_row_per_run_whatever_the_duplicates_and_late_rows(con):
    counts = rows(
        con,
        "SELECT job_name, run_id, attempt, count(*) AS n FROM job_runs_latest GROUP BY ALL HAVING count(*) > 1",
    )
    assert counts == []
    flaky = rows(con, "SELECT status FROM job_runs_latest WHERE job_name = 'flaky' ORDER BY end_time")
    # The STARTED rows were written after the terminal ones: a terminal state never reverts.
    assert [r["status"] for r in flaky] == ["FAILED", "FAILED", "FAILED", "SUCCESS"]
    storage = rows(con, "SELECT count(*) AS n FROM job_runs WHERE job_name = 'flaky'")[0]["n"]
    assert storage == 4 + 1 + 4  # the terminal rows, one duplicate, the late STARTED rows


def test_job_runs_latest_keeps_the_terminal_state_and_the_earliest_start(con, scenario):
    (retried,) = rows(con, "SELECT * FROM job_runs_latest WHERE run_id = 'retry-1'")
    assert retried["status"] == "SUCCESS"
    assert retried["start_time"].timestamp() == pytest.approx(scenario["retry_start"] / 1e9, abs=0.001)
    assert retried["duration_ms"] == 30 * 60_000


# job_runs_latest as it was written before it counted each run's rows to rank only the runs that need it: one
# row_number() over every row of the window. Run over the window's rows copied to a table first, so that no
# optimizer rewrite of the window can reach past the window's partitions.
_RANKED_EVERY_ROW = """
SELECT
    run_id, job_name, job_type, status, coalesce(dataset, run_dataset) AS dataset, event_time,
    first_start_time AS start_time, end_time,
    coalesce(duration_ms, date_sub('millisecond', first_start_time, end_time)) AS duration_ms,
    coalesce(records_processed, run_records) AS records_processed,
    CASE
        WHEN status = 'FAILED' AND error_message IS NULL THEN coalesce(run_error_type, error_type) ELSE error_type
    END AS error_type,
    CASE WHEN status = 'FAILED' THEN coalesce(error_message, run_error_message) ELSE error_message END
        AS error_message,
    run_attempt AS attempt, logical_date, run_type, trace_id, span_id, parent_span_id,
    service_name, attributes, ingested_at, run_parent_job_name AS parent_job_name,
    run_parent_run_id AS parent_run_id, run_owners AS owners, run_inputs AS inputs
FROM (
    SELECT
        *,
        coalesce(attempt, 1) AS run_attempt,
        max_by(parent_job_name, CASE WHEN parent_job_name IS NOT NULL THEN event_time END) OVER run
            AS run_parent_job_name,
        max_by(parent_run_id, CASE WHEN parent_run_id IS NOT NULL THEN event_time END) OVER run AS run_parent_run_id,
        max_by(owners, CASE WHEN owners IS NOT NULL THEN event_time END) OVER run AS run_owners,
        max_by(inputs, CASE WHEN inputs IS NOT NULL THEN event_time END) OVER run AS run_inputs,
        max_by(dataset, CASE WHEN dataset IS NOT NULL THEN (event_time, dataset) END) OVER run AS run_dataset,
        max_by(records_processed, CASE WHEN records_processed IS NOT NULL THEN (event_time, records_processed) END)
            OVER run AS run_records,
        max_by(error_type, CASE WHEN status = 'FAILED' AND error_message IS NOT NULL THEN error_key END) OVER run
            AS run_error_type,
        max_by(error_message, CASE WHEN status = 'FAILED' AND error_message IS NOT NULL THEN error_key END) OVER run
            AS run_error_message,
        row_number() OVER (
            PARTITION BY job_name, run_id, coalesce(attempt, 1)
            ORDER BY
                CASE WHEN status = 'STARTED' THEN 0 ELSE 1 END DESC, event_time DESC, status, trace_id, span_id,
                ingested_at DESC
        ) AS state_rank,
        min(start_time) OVER run AS first_start_time
    FROM (SELECT *, (event_time, error_message, coalesce(error_type, '')) AS error_key FROM window_rows)
    WINDOW run AS (PARTITION BY job_name, run_id, coalesce(attempt, 1))
)
WHERE state_rank = 1
"""


def test_job_runs_latest_is_the_ranking_of_every_row_of_the_window(local_location):
    """Random rows crowded onto few runs (duplicates, several terminal rows, ties on the millisecond and on every
    key, NULL keys, statuses and ids, STARTED-only runs, rows of a run on both sides of the window's edge) and
    runs of one or two rows: the view counts the rows of each run and ranks only some; its answer must be the
    ranking of every row's, column for column."""
    rng = random.Random(12)
    n = now_ns() // 1_000_000
    minute, day = MINUTE_NS // 1_000_000, DAY_NS // 1_000_000

    def row(job_name, run_id, attempt, status, event_ms, **columns) -> dict:
        return {
            "job_name": job_name,
            "run_id": run_id,
            "attempt": attempt,
            "status": status,
            "event_time": event_ms,
            "ingested_at": event_ms + 1000,
            **columns,
        }

    crowded = []
    contents: dict[tuple, dict] = {}
    for _ in range(400):
        # A tenth of the rows are older than the 30-day window: their run's earliest start must not count.
        event = n - rng.choice([minute, 2 * minute, 3 * minute, 40 * day])
        keys = row(
            rng.choice(["a", "b", None]),
            rng.choice(["r1", "r2", "r3", None]),
            rng.choice([None, 1, 2]),
            rng.choice(["STARTED", "SUCCESS", "SUCCESS", "FAILED", "FAILED", None]),
            event,
            trace_id=rng.choice([None, "t1", "t2"]),
            span_id=rng.choice([None, "s1", "s2"]),
            ingested_at=event + rng.choice([0, 1000, 2000]),
        )
        # Rows alike in every ranked column are copies of one row (the views' premise): the same content.
        content = contents.setdefault(
            tuple(keys.values()),
            {
                "start_time": rng.choice([None, event - 5 * minute, event - 9 * minute, event - 50 * day]),
                "end_time": rng.choice([None, event]),
                "duration_ms": rng.choice([None, 60_000, 120_000]),
                "records_processed": rng.choice([None, 10, 20]),
                "error_type": rng.choice([None, "E1", "E2"]),
                "error_message": rng.choice([None, "m1", "m2"]),
                "dataset": rng.choice([None, "d1", "d2"]),
                "attributes": rng.choice([None, {"k": "v"}, {"k": "w"}]),
            },
        )
        crowded.append(keys | content)
    plain = []
    for i in range(100):
        event = n - (i + 1) * 10 * minute
        terminal = row("c", f"p{i}", 1, "FAILED" if i % 7 == 0 else "SUCCESS", event, start_time=event - 5 * minute)
        terminal |= {"end_time": event, "duration_ms": None if i % 5 == 0 else 300_000, "trace_id": f"t{i}"}
        plain.append(terminal)
        if i % 2:  # the processor's STARTED row too
            plain.append(row("c", f"p{i}", 1, "STARTED", event - 5 * minute, start_time=event - 6 * minute))
        if i % 10 == 3:  # still going: STARTED only
            plain.append(row("c", f"q{i}", 2, "STARTED", event, start_time=event))
    write = Writer(Options.resolve(local_location)).write
    write({"job_runs": crowded[:200] + plain[:100]})
    write({"job_runs": crowded[200:] + plain[100:]})
    write({"job_runs": rng.sample(crowded, 40) + plain[::9]})  # copies of rows
    con = local.connect(local_location)
    con.execute(
        "CREATE TEMP TABLE window_rows AS SELECT * FROM job_runs "
        "WHERE dt >= strftime(current_date - INTERVAL 30 DAY, '%Y-%m-%d')"
    )
    expected = con.execute(_RANKED_EVERY_ROW).fetchall()
    assert len(expected) == 3 * 4 * 2 + 100 + 10  # the crowded runs (attempt NULL is 1), the plain ones
    different = f"SELECT count(*) FROM (SELECT * FROM job_runs_latest EXCEPT ALL {_RANKED_EVERY_ROW})"
    assert con.execute(different).fetchone() == (0,)
    different = f"SELECT count(*) FROM ({_RANKED_EVERY_ROW} EXCEPT ALL SELECT * FROM job_runs_latest)"
    assert con.execute(different).fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM job_runs_latest").fetchone() == (len(expected),)
    # Runs with rows on both sides of the window's edge are there, started earlier outside it than inside.
    edge = """
        SELECT count(*)
        FROM job_runs AS old
        JOIN job_runs_latest AS run
            ON old.job_name IS NOT DISTINCT FROM run.job_name AND old.run_id IS NOT DISTINCT FROM run.run_id
            AND coalesce(old.attempt, 1) = run.attempt
        WHERE old.dt NOT IN (SELECT dt FROM window_rows) AND old.start_time < run.start_time
    """
    assert con.execute(edge).fetchone()[0] > 0


def test_run_views_read_window_days_and_dataset_views_dataset_window_days(con):
    assert rows(con, "SELECT * FROM job_runs_latest WHERE job_name = 'load_ancient'") == []
    assert rows(con, "SELECT count(*) AS n FROM job_runs WHERE job_name = 'load_ancient'")[0]["n"] == 1
    (ancient,) = rows(con, "SELECT * FROM dataset_status_latest WHERE dataset = 'ancient'")
    assert (ancient["freshness_minutes"], ancient["is_stale"]) == (40 * 24 * 60, False)
    assert rows(con, "SELECT * FROM dataset_status_latest WHERE dataset = 'prehistoric'") == []
    assert rows(con, "SELECT count(*) AS n FROM dataset_status WHERE dataset = 'prehistoric'")[0]["n"] == 1


def test_a_dataset_last_updated_two_months_ago_is_listed_as_stale_with_the_defaults(con):
    (forgotten,) = rows(con, "SELECT * FROM stale_datasets WHERE dataset = 'forgotten'")
    assert (forgotten["last_status"], forgotten["last_job_name"]) == ("SUCCESS", "load_forgotten")
    assert (forgotten["freshness_minutes"], forgotten["freshness_sla_minutes"]) == (60 * 24 * 60, 24 * 60)


def test_a_shorter_dataset_window_drops_datasets_older_than_it(scenario):
    con = local.connect(scenario["location"], parameters=catalog.ViewParameters(dataset_window_days=45))
    datasets = {r["dataset"] for r in rows(con, "SELECT dataset FROM dataset_status_latest")}
    assert "ancient" in datasets and "forgotten" not in datasets


def test_dataset_status_latest_tells_fresh_from_stale(con):
    datasets = by("dataset", rows(con, "SELECT * FROM dataset_status_latest"))
    assert set(datasets) == {"orders", "customers", "events", "archive", "broken_ds", "ancient", "forgotten"}
    orders = datasets["orders"]
    # 30.5 minutes old: whole minutes, as Athena counts them.
    assert (orders["freshness_minutes"], orders["freshness_sla_minutes"], orders["is_stale"]) == (30, 60, False)
    assert orders["record_count"] == 1000
    assert orders["last_status"] == "SUCCESS"
    customers = datasets["customers"]
    assert (customers["freshness_minutes"], customers["is_stale"]) == (180, True)
    # No SLA: never stale while it has succeeded.
    assert (datasets["archive"]["freshness_minutes"], datasets["archive"]["is_stale"]) == (10 * 24 * 60, False)
    broken = datasets["broken_ds"]
    assert (broken["last_status"], broken["last_success_at"], broken["is_stale"]) == ("FAILED", None, True)


def test_a_backfill_of_old_data_does_not_make_a_dataset_fresh(con, scenario):
    events = rows(con, "SELECT * FROM dataset_status_latest WHERE dataset = 'events'")[0]
    # The backfill succeeded a minute ago, but its data is ten days old; the newest data is five hours old.
    assert events["last_success_at"].timestamp() == pytest.approx(scenario["now"] / 1e9 - 60, abs=1)
    assert events["data_as_of"].timestamp() == pytest.approx(scenario["now"] / 1e9 - 5 * 3600, abs=1)
    assert (events["freshness_minutes"], events["freshness_sla_minutes"], events["is_stale"]) == (300, 120, True)


def test_stale_datasets_lists_exactly_the_stale_ones(con):
    stale = rows(con, "SELECT dataset FROM stale_datasets ORDER BY dataset")
    assert [r["dataset"] for r in stale] == ["broken_ds", "customers", "events", "forgotten"]


def test_recurring_failures_counts_the_current_streak_and_recent_failures(con):
    jobs = by("job_name", rows(con, "SELECT * FROM recurring_failures"))
    # trend_job failed once yesterday: listed, with no streak.
    assert set(jobs) == {"flaky", "broken", "doomed", "trend_job"}
    assert (jobs["trend_job"]["current_streak"], jobs["trend_job"]["recent_failures"]) == (0, 1)
    # Three failures in a row then a success: the streak is over, the failures still count (once each).
    assert (jobs["flaky"]["current_streak"], jobs["flaky"]["recent_failures"]) == (0, 3)
    assert jobs["flaky"]["last_error_type"] == "TimeoutError"
    broken = jobs["broken"]
    assert (broken["current_streak"], broken["recent_failures"], broken["recent_runs"]) == (3, 3, 4)
    assert (broken["last_error_type"], broken["last_error_message"]) == ("Error2", "broken broke")
    assert broken["last_failure_at"] == broken["last_run_at"]
    assert jobs["doomed"]["current_streak"] == 1


def test_volume_anomalies_flags_a_spike_and_a_drop_against_the_trailing_baseline(con):
    anomalies = by("run_id", rows(con, "SELECT * FROM volume_anomalies WHERE job_name = 'ingest'"))
    assert set(anomalies) == {"ingest-drop", "ingest-spike", "ingest-backfill"}
    drop, spike = anomalies["ingest-drop"], anomalies["ingest-spike"]
    assert (drop["direction"], drop["baseline_runs"]) == ("drop", 11)
    assert drop["z_score"] < -3
    # The backfill's million records are not in the spike's baseline (else the spike would hide in it),
    # and the duplicated runs count once.
    assert (spike["direction"], spike["baseline_runs"]) == ("spike", 14)
    assert spike["z_score"] > 3
    assert spike["baseline_mean"] == pytest.approx((13 * 1000 + 10 + 10) / 14)
    assert anomalies["ingest-backfill"]["run_type"] == "backfill"


def test_volume_anomalies_needs_enough_points_and_treats_a_constant_baseline_strictly(con):
    assert rows(con, "SELECT * FROM volume_anomalies WHERE job_name = 'young'") == []
    (constant,) = rows(con, "SELECT * FROM volume_anomalies WHERE job_name = 'constant'")
    assert (constant["run_id"], constant["baseline_stddev"], constant["z_score"]) == ("constant-off-by-one", 0, None)


def test_runtime_trend_gives_daily_percentiles_with_backfills_apart(con, scenario):
    yesterday = datetime.datetime.fromtimestamp(scenario["today"] / 1e9 - 86400, tz=datetime.timezone.utc).date()
    trend = rows(con, "SELECT * FROM runtime_trend WHERE job_name = 'trend_job' ORDER BY is_backfill")
    assert [(r["run_date"], r["is_backfill"], r["runs"], r["failures"]) for r in trend] == [
        (yesterday, False, 11, 1),
        (yesterday, True, 1, 0),
    ]
    assert (trend[0]["p50_duration_ms"], trend[0]["p95_duration_ms"]) == (5 * 60_000, 10 * 60_000)
    assert trend[1]["p95_duration_ms"] == 100 * 60_000
    (night,) = rows(con, "SELECT run_date FROM runtime_trend WHERE job_name = 'night_job'")
    assert night["run_date"] == yesterday - datetime.timedelta(days=1)


def test_hung_runs_are_started_past_the_floor_or_three_times_the_p95(con):
    hung = by("run_id", rows(con, "SELECT * FROM hung_runs"))
    assert set(hung) == {"slow-hung", "new-hung"}
    # slow's p95 is 10 minutes: 3 x 10 < the 60 minute floor. long's p95 of 60 minutes puts it at 180.
    assert (hung["slow-hung"]["running_minutes"], hung["slow-hung"]["threshold_minutes"]) == (90, 60)
    assert hung["slow-hung"]["p95_duration_ms"] == 10 * 60_000
    assert (hung["new-hung"]["p95_duration_ms"], hung["new-hung"]["threshold_minutes"]) == (None, 60)


def test_hung_runs_parameters_change_the_threshold(scenario):
    parameters = catalog.ViewParameters(hung_floor_minutes=15, hung_factor=1.0)
    con = local.connect(scenario["location"], parameters=parameters)
    hung = {r["run_id"] for r in rows(con, "SELECT run_id FROM hung_runs")}
    assert hung == {"slow-hung", "new-hung", "slow-running", "long-running"}


def test_date_diff_counts_whole_units_as_athena_does():
    # Trino counts whole units between two instants; DuckDB's date_diff counts boundaries crossed.
    query = """SELECT
        date_diff('minute', TIMESTAMP '2024-01-01 11:59:30', TIMESTAMP '2024-01-01 12:00:10'),
        date_diff('day', TIMESTAMP '2024-01-01 23:59:00', TIMESTAMP '2024-01-02 00:01:00'),
        date_diff('minute', TIMESTAMP '2024-01-01 12:00:00', TIMESTAMP '2024-01-01 12:30:59.999'),
        date_diff('millisecond', TIMESTAMP '2024-01-01 12:00:00', TIMESTAMP '2024-01-01 12:00:01.5')"""
    con = duckdb.connect()
    assert con.execute(catalog.to_duckdb(query)).fetchone() == (0, 0, 30, 1500)
    assert con.execute(sqlglot.transpile(query, read="trino", write="duckdb")[0]).fetchone()[:2] == (1, 1)


def test_percentiles_are_exact_nearest_rank_in_duckdb():
    query = "SELECT approx_percentile(x, 0.5), approx_percentile(x, 0.95) FROM UNNEST(SEQUENCE(1, 10)) AS t(x)"
    assert duckdb.connect().execute(catalog.to_duckdb(query)).fetchone() == (5, 10)


def test_every_view_has_the_same_columns_on_an_empty_location(con, tmp_path):
    empty = local.connect(tmp_path / "nothing")
    for view in catalog.VIEWS:
        assert empty.sql(f"SELECT * FROM {view}").fetchall() == []
        assert empty.sql(f"DESCRIBE {view}").fetchall() == con.sql(f"DESCRIBE {view}").fetchall()


def _alert(incident: str, state: str, at_ms: int, target: str, delivered: bool = True, **columns) -> dict:
    """An alerts row as otel-datasink alert writes it (one notification event to one target)."""
    return {
        "incident_id": incident,
        "kind": "stale_dataset",
        "subject": incident,
        "severity": "warning",
        "state": state,
        "opened_at": columns.pop("opened_ms", at_ms),
        "notified_at": at_ms,
        "targets": target,
        "delivered": delivered,
        "summary": f"{incident} at {at_ms}",
        "details": json.dumps({"target_id": target}),
        "event_time": at_ms,
        "ingested_at": at_ms,
        **columns,
    }


def test_alerts_open_lists_incidents_whose_latest_state_is_firing(local_location):
    n = now_ns() // 1_000_000
    hour = HOUR_NS // 1_000_000
    opened = n - 5 * hour
    rows_ = [
        # Open, reminded: the latest summary, the earliest opening, the last delivery.
        _alert("reminded", "FIRING", opened, "a"),
        _alert("reminded", "FIRING", opened, "b"),
        _alert("reminded", "FIRING", n - hour, "a", opened_ms=opened),
        _alert("reminded", "FIRING", n - hour, "b", delivered=False, opened_ms=opened),
        # Open; b's failed message was retried and taken later: every target got the latest message.
        _alert("retried", "FIRING", opened, "a"),
        _alert("retried", "FIRING", opened, "b", delivered=False),
        _alert("retried", "FIRING", n - hour, "b", opened_ms=opened),
        # Over: RESOLVED in the millisecond of a FIRING (a resolution is final), and plainly later.
        _alert("tie", "FIRING", n - hour, "a", opened_ms=opened),
        _alert("tie", "RESOLVED", n - hour, "b", opened_ms=opened),
        _alert("resolved", "FIRING", opened, "a"),
        _alert("resolved", "RESOLVED", n - hour, "a", delivered=False, opened_ms=opened),
    ]
    write = Writer(Options.resolve(local_location)).write
    write({"alerts": rows_[:5]})
    write({"alerts": rows_[5:] + rows_[2:3]})  # a row stored twice counts once
    con = local.connect(local_location)
    found = rows(con, "SELECT * FROM alerts_open ORDER BY incident_id")
    assert [r["incident_id"] for r in found] == ["reminded", "retried"]
    reminded, retried = found
    as_time = lambda ms: datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)  # noqa: E731
    assert reminded["opened_at"] == as_time(opened) and reminded["last_notified_at"] == as_time(n - hour)
    assert reminded["summary"] == f"reminded at {n - hour}"
    assert (reminded["target_count"], reminded["undelivered_targets"], reminded["all_delivered"]) == (2, 1, False)
    assert (retried["target_count"], retried["undelivered_targets"], retried["all_delivered"]) == (2, 0, True)


def test_a_run_reported_in_separate_start_and_end_events_gets_its_duration_from_them(tmp_path):
    # OpenLineage's START and COMPLETE: the terminal record knows no start, so its row carries no duration.
    location = str(tmp_path / "datasink")
    noon = now_ns() // DAY_NS * DAY_NS - 12 * HOUR_NS  # yesterday's, so both runs share a day whenever this runs
    both = job_span("two_events", noon - 7 * MINUTE_NS, noon, run_id="r-both")
    alone = job_span("two_events", noon - 3 * MINUTE_NS, noon - MINUTE_NS, run_id="r-end-only")
    write_spans(location, [dataclasses.replace(both, start_time_ns=None), started(both)])
    write_spans(location, [dataclasses.replace(alone, start_time_ns=None)])
    con = local.connect(location)
    durations = dict(con.sql("SELECT run_id, duration_ms FROM job_runs_latest ORDER BY run_id").fetchall())
    assert durations == {"r-both": 7 * 60_000, "r-end-only": None}  # no start seen: no duration guessed
    # The run with no start is counted on the day it ended.
    trend = con.sql("SELECT run_date, runs, p50_duration_ms FROM runtime_trend WHERE job_name = 'two_events'")
    yesterday = datetime.datetime.fromtimestamp(noon / 1e9, tz=datetime.timezone.utc).date()
    assert trend.fetchall() == [(yesterday, 2, 7 * 60_000)]
