"""A run is (job_name, run_id, attempt): run ids shared across jobs and retries, in every view.

Orchestrators hand one run id to many jobs (Airflow's run_id is the same for every task of a DAG run) and
keep it across retries, raising the attempt. The rows are written by the real pipeline (mapping, writer)
and read back with :func:`otel_datasink.local.connect` (DuckDB).
"""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest
from job_spans import DAY_NS, HOUR_NS, MINUTE_NS, job_span, now_ns, started, write_spans

from otel_datasink import local, semconv
from otel_datasink.cli import main

MS_NS = 1_000_000
JOBS = ("dag.extract", "dag.transform", "dag.load")
NOISE = (-20, 10, 5, -5, 15, -10, 0, 20, -15, 5)


def attempt_of(span, attempt: int):
    """The span as attempt ``attempt`` of its run (job_span leaves ``job.run.attempt`` unset, i.e. 1)."""
    return dataclasses.replace(span, attributes={**span.attributes, semconv.JOB_RUN_ATTEMPT: attempt})


def rows(con, query: str) -> list[dict]:
    relation = con.sql(query)
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def on_ms(ns: int) -> int:
    """``ns`` rounded down to its millisecond: the precision of the tables."""
    return ns - ns % MS_NS


# --- three jobs of one DAG, one run id per DAG run ------------------------------------------------------------


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    """Every run of three jobs carries the DAG run's id: ten steady days, a spike yesterday, failures
    today and a run started two hours ago that never ended."""
    location = str(tmp_path_factory.mktemp("dag") / "datasink")
    n = now_ns()
    spans = []
    run_ids = {}
    for day, noise in zip(range(11, 1, -1), NOISE, strict=True):
        end = n - day * DAY_NS - HOUR_NS
        run_ids[day] = f"scheduled__day-{day}"
        for job in JOBS:
            spans.append(
                job_span(job, end - 5 * MINUTE_NS, end, records=1000 + noise, dataset=f"{job}.out", run_id=run_ids[day])
            )
    spike_end = n - DAY_NS
    for job in JOBS:
        spans.append(job_span(job, spike_end - 5 * MINUTE_NS, spike_end, records=50_000, run_id="scheduled__day-1"))
    failed_end = n - 3 * HOUR_NS
    for job in JOBS:
        spans.append(
            job_span(job, failed_end - 5 * MINUTE_NS, failed_end, failed=True, dataset=f"{job}.out", run_id="today")
        )
    hung = [job_span(job, n - 2 * HOUR_NS, None, run_id="manual__retrigger") for job in JOBS]
    write_spans(location, spans + hung)
    # The processor's STARTED rows, after the terminal ones: each joins its own job's run, no other job's.
    write_spans(location, [started(span) for span in spans[-6:]])
    con = local.connect(location)
    yield con
    con.close()


def test_a_run_id_shared_by_three_jobs_is_three_runs_in_job_runs_latest(dag):
    per_run = rows(
        dag, "SELECT run_id, count(*) AS n, count(DISTINCT job_name) AS jobs FROM job_runs_latest GROUP BY 1"
    )
    assert len(per_run) == 10 + 1 + 1 + 1
    assert all((r["n"], r["jobs"]) == (3, 3) for r in per_run)
    today = rows(dag, "SELECT job_name, status, attempt FROM job_runs_latest WHERE run_id = 'today' ORDER BY 1")
    assert today == [{"job_name": job, "status": "FAILED", "attempt": 1} for job in sorted(JOBS)]


def test_each_job_of_a_shared_run_id_is_in_recurring_failures(dag):
    failing = rows(dag, "SELECT job_name, current_streak, recent_failures FROM recurring_failures ORDER BY 1")
    assert failing == [{"job_name": job, "current_streak": 1, "recent_failures": 1} for job in sorted(JOBS)]


def test_each_job_of_a_shared_run_id_is_in_volume_anomalies_with_its_own_baseline(dag):
    anomalies = rows(
        dag, "SELECT job_name, run_id, attempt, baseline_runs, direction FROM volume_anomalies ORDER BY job_name"
    )
    # Every baseline run shares its run id with the other two jobs' runs; each job's ten days count.
    assert anomalies == [
        {"job_name": job, "run_id": "scheduled__day-1", "attempt": 1, "baseline_runs": 10, "direction": "spike"}
        for job in sorted(JOBS)
    ]


def test_each_job_of_a_shared_run_id_is_in_runtime_trend(dag):
    trend = rows(
        dag,
        "SELECT job_name, sum(runs) AS runs, sum(failures) AS failures FROM runtime_trend GROUP BY 1 ORDER BY 1",
    )
    assert trend == [{"job_name": job, "runs": 12, "failures": 1} for job in sorted(JOBS)]


def test_each_job_of_a_shared_run_id_is_in_hung_runs(dag):
    hung = rows(dag, "SELECT job_name, run_id, attempt, running_minutes FROM hung_runs ORDER BY 1")
    assert hung == [
        {"job_name": job, "run_id": "manual__retrigger", "attempt": 1, "running_minutes": 120} for job in sorted(JOBS)
    ]


def test_each_job_of_a_shared_run_id_updates_its_own_dataset(dag):
    datasets = rows(
        dag, "SELECT dataset, last_job_name, last_run_id, last_status FROM dataset_status_latest ORDER BY 1"
    )
    assert datasets == [
        {"dataset": f"{job}.out", "last_job_name": job, "last_run_id": "today", "last_status": "FAILED"}
        for job in sorted(JOBS)
    ]


def test_updates_of_one_dataset_by_jobs_sharing_a_run_id_in_one_millisecond_answer_alike_in_any_order(tmp_path):
    # Three jobs of one DAG run write one dataset in the same millisecond: three updates (not one copy),
    # and the latest is chosen by the rows, not by the order they were written in.
    n = on_ms(now_ns()) - HOUR_NS
    spans = [
        job_span(job, n - MINUTE_NS, n, run_id="scheduled__x", updates=[dict(name="shared", record_count=count)])
        for job, count in zip(JOBS, (10, 20, 30), strict=True)
    ]
    answers = set()
    for i, order in enumerate(itertools.permutations(spans)):
        location = str(tmp_path / f"order-{i}")
        for span in order:
            write_spans(location, [span])
        con = local.connect(location)
        ((job, count),) = con.execute(
            "SELECT last_job_name, record_count FROM dataset_status_latest WHERE dataset = 'shared'"
        ).fetchall()
        assert count == {"dag.extract": 10, "dag.transform": 20, "dag.load": 30}[job]
        answers.add((job, count))
        con.close()
    assert len(answers) == 1


def test_volume_anomalies_judges_a_run_against_the_other_attempts_of_its_run_id(tmp_path):
    # A job that reuses one run id and counts attempts up: each attempt is a run of the baseline.
    location = str(tmp_path / "datasink")
    n = now_ns()
    spans = []
    for attempt, (day, noise) in enumerate(zip(range(10, 1, -1), NOISE, strict=False), start=1):
        end = n - day * DAY_NS
        spans.append(
            attempt_of(job_span("nightly", end - MINUTE_NS, end, records=1000 + noise, run_id="nightly"), attempt)
        )
    spans.append(
        attempt_of(job_span("nightly", n - DAY_NS - MINUTE_NS, n - DAY_NS, records=9000, run_id="nightly"), 10)
    )
    write_spans(location, spans)
    con = local.connect(location)
    assert con.execute("SELECT count(*) FROM job_runs_latest").fetchone() == (10,)
    assert con.execute("SELECT attempt, baseline_runs FROM volume_anomalies").fetchall() == [(10, 9)]


# --- retries under one run id ---------------------------------------------------------------------------------


def retry_pair(job: str, end_ns: int, statuses=("FAILED", "SUCCESS"), starts: tuple[int, int] | None = None):
    """Attempts 1 and 2 of run id ``r``, both ending in the millisecond of ``end_ns`` (ms-aligned); by
    default attempt 1 runs five minutes, attempt 2 starts and ends within that millisecond."""
    first_start, second_start = starts or (end_ns - 5 * MINUTE_NS, end_ns + MS_NS // 5)
    one = job_span(job, first_start, end_ns + MS_NS // 10, failed=statuses[0] == "FAILED", run_id="r")
    two = job_span(job, second_start, end_ns + MS_NS * 9 // 10, failed=statuses[1] == "FAILED", run_id="r")
    return [attempt_of(one, 1), attempt_of(two, 2)]


@pytest.fixture
def retries(tmp_path):
    location = str(tmp_path / "datasink")
    end = on_ms(now_ns()) - HOUR_NS
    spans = [
        *retry_pair("retried", end),
        # Attempt 2's worker clock is behind: it starts "before" attempt 1, and is still the later run.
        *retry_pair("skewed", end, starts=(end - 10 * MS_NS, end - 20 * MS_NS)),
        # A re-run of a run that had succeeded, failing: the attempt decides, not the status.
        *retry_pair("rerun", end, statuses=("SUCCESS", "FAILED")),
    ]
    # A worker killed mid-run leaves attempt 1 STARTED; attempt 2 ran and succeeded.
    crashed_start = now_ns() - 3 * HOUR_NS
    crashed = [
        attempt_of(job_span("crashed", crashed_start, None, run_id="c"), 1),
        attempt_of(job_span("crashed", crashed_start + HOUR_NS, crashed_start + 90 * MINUTE_NS, run_id="c"), 2),
    ]
    write_spans(location, [started(span) for span in spans] + crashed)
    write_spans(location, spans)
    con = local.connect(location)
    yield con
    con.close()


def test_failed_attempt_1_and_successful_attempt_2_of_one_run_id_are_two_runs(retries):
    runs = rows(
        retries, "SELECT attempt, status, duration_ms FROM job_runs_latest WHERE job_name = 'retried' ORDER BY 1"
    )
    assert runs == [
        {"attempt": 1, "status": "FAILED", "duration_ms": 5 * 60_000},
        {"attempt": 2, "status": "SUCCESS", "duration_ms": 0},
    ]


def test_a_retry_that_succeeds_in_the_same_millisecond_ends_the_streak(retries):
    failing = {r["job_name"]: r for r in rows(retries, "SELECT * FROM recurring_failures")}
    assert set(failing) == {"retried", "skewed", "rerun"}
    assert (failing["retried"]["current_streak"], failing["retried"]["recent_failures"]) == (0, 1)
    assert (failing["skewed"]["current_streak"], failing["skewed"]["recent_failures"]) == (0, 1)
    assert (failing["rerun"]["current_streak"], failing["rerun"]["recent_failures"]) == (1, 1)


def test_runtime_trend_counts_both_attempts(retries):
    trend = rows(
        retries,
        "SELECT job_name, sum(runs) AS runs, sum(failures) AS failures FROM runtime_trend GROUP BY 1 ORDER BY 1",
    )
    assert trend == [
        {"job_name": "crashed", "runs": 1, "failures": 0},
        {"job_name": "rerun", "runs": 2, "failures": 1},
        {"job_name": "retried", "runs": 2, "failures": 1},
        {"job_name": "skewed", "runs": 2, "failures": 1},
    ]


def test_an_attempt_left_started_by_a_crash_is_a_run_but_not_hung_once_retried(retries):
    crashed = rows(retries, "SELECT attempt, status FROM job_runs_latest WHERE job_name = 'crashed' ORDER BY 1")
    assert crashed == [{"attempt": 1, "status": "STARTED"}, {"attempt": 2, "status": "SUCCESS"}]
    # Three hours STARTED, far past the floor; but attempt 2 took over: attempt 1 is abandoned, not running.
    assert rows(retries, "SELECT * FROM hung_runs") == []


def test_the_retry_pair_answers_alike_whatever_the_order_and_flushes_of_its_rows(tmp_path):
    end = on_ms(now_ns()) - HOUR_NS
    pair = retry_pair("pair", end)
    rows_of_pair = [*(started(span) for span in pair), *pair]
    layouts = [[rows_of_pair]]
    shuffle = random.Random(1)
    for _ in range(7):
        order = shuffle.sample(rows_of_pair, len(rows_of_pair))
        cut = shuffle.randrange(1, len(order))
        layouts.append([order[:cut], order[cut:]])
    layouts.append([[row] for row in reversed(rows_of_pair)])
    for i, flushes in enumerate(layouts):
        location = str(tmp_path / f"layout-{i}")
        for flush in flushes:
            write_spans(location, flush)
        con = local.connect(location)
        assert con.execute("SELECT current_streak, recent_failures FROM recurring_failures").fetchall() == [(0, 1)]
        con.close()


def test_one_attempt_reported_twice_in_one_millisecond_answers_alike_whatever_was_ingested_last(tmp_path):
    # Two spans claim the same run (job, run id, attempt) and end in the same millisecond, one FAILED, one not:
    # the rows decide which state the run is in (FAILED), not which flush came last.
    end = on_ms(now_ns()) - HOUR_NS
    failed = job_span("twice", end - MINUTE_NS, end, failed=True, run_id="r")
    succeeded = job_span("twice", end - MINUTE_NS, end + MS_NS // 2, run_id="r")
    for i, flushes in enumerate([([failed], [succeeded]), ([succeeded], [failed])]):
        location = str(tmp_path / f"order-{i}")
        for flush in flushes:
            write_spans(location, flush)
        con = local.connect(location)
        assert con.execute("SELECT status FROM job_runs_latest").fetchall() == [("FAILED",)]
        con.close()


def test_the_demo_retry_ends_the_streak_on_every_run(tmp_path, monkeypatch, capsys):
    # Freeze the SDK's clock within one millisecond, so that the demo's failed attempt 1 and successful
    # attempt 2 always end in the same millisecond (on a real clock about half the runs do); the run ids are
    # the SDK's random trace and span ids, a fresh pair each run.
    import opentelemetry.sdk.trace as sdk_trace

    ticks = itertools.count()
    base = on_ms(now_ns())
    monkeypatch.setattr(sdk_trace, "time_ns", lambda: base + next(ticks) % 1000 * 1000)
    for i in range(20):
        location = str(tmp_path / f"demo-{i}")
        assert main(["demo", "--location", location]) == 0
        con = local.connect(location)
        assert rows(
            con, "SELECT attempt, status FROM job_runs_latest WHERE job_name = 'ingest_orders' ORDER BY attempt"
        ) == [{"attempt": 1, "status": "FAILED"}, {"attempt": 2, "status": "SUCCESS"}]
        assert rows(con, "SELECT job_name, current_streak, recent_failures FROM recurring_failures") == [
            {"job_name": "ingest_orders", "current_streak": 0, "recent_failures": 1}
        ]
        con.close()
    capsys.readouterr()
