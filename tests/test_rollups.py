"""Rollups of closed days (``otel_datasink.rollup``): written by the compaction, read by the views, and the views'
answers the same with them as from the rows alone, on random stores with late rows, copies and ties."""

from __future__ import annotations

import datetime
import glob
import random
import re
from pathlib import Path

import pytest
from job_spans import DAY_NS, MINUTE_NS, now_ns

from otel_datasink import catalog, local
from otel_datasink.compact import compact
from otel_datasink.config import Options
from otel_datasink.location import filed_time, partition_of
from otel_datasink.rollup import closed_before
from otel_datasink.writer import Writer

MINUTE_MS, DAY_MS = MINUTE_NS // 1_000_000, DAY_NS // 1_000_000
WINDOWS = (3, 30, 400)
"""dataset_window_days compared: inside the random store's span, across it, beyond it."""


def _updates(rng: random.Random, count: int, now_ms: int, days: int) -> list[dict]:
    """Random updates of a few datasets over the last ``days`` days: ties on the millisecond between different
    spans, statuses and runs; NULL counts, SLAs and watermarks; owners on some; future-dated times."""
    rows = []
    for _ in range(count):
        dataset = rng.choice(["raw.orders", "raw.users", "mart.sales", "mart.kpis"])
        # Few distinct instants per day, so that updates share milliseconds.
        updated = now_ms - rng.randrange(days) * DAY_MS - rng.choice([0, 7, 300]) * MINUTE_MS
        ingested = updated + rng.choice([1000, 5000])
        if rng.random() < 0.03:  # a broken clock: updated_at two days ahead of the receiver's
            ingested = updated - 2 * DAY_MS
        status = rng.choice(["SUCCESS", "SUCCESS", "SUCCESS", "FAILED"])
        rows.append(
            {
                "dataset": dataset,
                "status": status,
                "updated_at": updated,
                "records_written": rng.randrange(100),
                "record_count": rng.choice([None, rng.randrange(10_000)]),
                "watermark": rng.choice([None, updated - 3600_000, ingested + 3 * DAY_MS]),
                "freshness_sla_minutes": rng.choice([None, 60, 24 * 60]),
                "job_name": rng.choice(["load_a", "load_b"]),
                "run_id": rng.choice(["r1", "r2", "r3"]),
                "trace_id": rng.choice(["t1", "t2"]),
                "span_id": rng.choice(["s1", "s2", "s3"]),
                "event_time": updated,
                "ingested_at": ingested,
                # Owners follow the instant: two updates of one millisecond name the same owners (max_by ties).
                "owners": ["team-" + str(updated % 3)] if updated % 2 else None,
            }
        )
    return rows


_EVERY_UPDATE_RANKED = """
WITH recent AS (
    SELECT *
    FROM dataset_status
    WHERE dt >= strftime(DATE '{today}' - INTERVAL {window} DAY, '%Y-%m-%d')
        AND NOT coalesce(updated_at > ingested_at + INTERVAL 1 DAY, false)
),
ranked AS (
    SELECT *,
        row_number() OVER (PARTITION BY dataset ORDER BY updated_at DESC, {ties}) AS last_rank,
        row_number() OVER (
            PARTITION BY dataset, record_count IS NULL ORDER BY updated_at DESC, {ties}
        ) AS counted_rank,
        row_number() OVER (
            PARTITION BY dataset, freshness_sla_minutes IS NULL ORDER BY updated_at DESC, {ties}
        ) AS sla_rank
    FROM recent
)
SELECT
    dataset,
    max(status) FILTER (WHERE last_rank = 1) AS last_status,
    max(updated_at) FILTER (WHERE status = 'SUCCESS') AS last_success_at,
    max(CASE WHEN watermark > ingested_at + INTERVAL 1 DAY THEN updated_at ELSE coalesce(watermark, updated_at) END)
        FILTER (WHERE status = 'SUCCESS') AS data_as_of,
    max(freshness_sla_minutes) FILTER (WHERE sla_rank = 1 AND freshness_sla_minutes IS NOT NULL) AS sla,
    max(record_count) FILTER (WHERE counted_rank = 1 AND record_count IS NOT NULL) AS record_count,
    max(updated_at) AS last_update_at,
    max(job_name) FILTER (WHERE last_rank = 1) AS last_job_name,
    max(run_id) FILTER (WHERE last_rank = 1) AS last_run_id,
    arg_max(owners, CASE WHEN len(owners) > 0 THEN updated_at END) AS owners
FROM ranked
GROUP BY dataset
ORDER BY dataset
"""
"""dataset_status_latest's meaning (the contract, the view before rollups), every update of the window ranked."""
_TIES = "status DESC, run_id DESC, job_name DESC, trace_id DESC, span_id DESC, ingested_at DESC"
_COLUMNS = (
    "dataset, last_status, last_success_at, data_as_of, freshness_sla_minutes, record_count, last_update_at, "
    "last_job_name, last_run_id, owners"
)


def _latest(location: str, window: int, now: datetime.datetime, rollups: bool = True) -> list[tuple]:
    return _answers(location, window, now, rollups)[0]


def _answers(location: str, window: int, now: datetime.datetime, rollups: bool = True) -> list[list[tuple]]:
    """dataset_status_latest at ``now``: read with the rollups (unless ``rollups`` is false), then, on the same
    connection, with the rollup table emptied (the rows alone); the first checked against every update ranked."""
    parameters = catalog.ViewParameters(dataset_window_days=window)
    con = local.connect(location, parameters=parameters, rollups=rollups)
    try:
        catalog.pin_time(con, now, parameters, ())
        query = f"SELECT {_COLUMNS} FROM dataset_status_latest ORDER BY dataset"
        answers = [con.execute(query).fetchall()]
        every = _EVERY_UPDATE_RANKED.format(today=now.date().isoformat(), window=window, ties=_TIES)
        assert answers[0] == con.execute(every).fetchall(), "with rollups"
        con.execute("CREATE TEMP TABLE no_rollups AS SELECT * FROM dataset_status_daily WHERE false")
        con.execute("CREATE OR REPLACE VIEW dataset_status_daily AS SELECT * FROM no_rollups")
        return [*answers, con.execute(query).fetchall()]
    finally:
        con.close()


def _assert_same_answers(location: str) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    for window in WINDOWS:
        with_rollups, rows_alone = _answers(location, window, now)
        assert with_rollups == rows_alone, window


def _rollup_files(location: str) -> dict[str, list[str]]:
    writer = Writer(Options.resolve(location))
    found: dict[str, list[str]] = {}
    for path in writer.fs.find(writer.path("dataset_status_daily")):
        found.setdefault(path.split("/dt=")[1].split("/")[0], []).append(path.rsplit("/", 1)[1])
    return found


def test_dataset_status_latest_answers_the_same_from_rollups_as_from_the_rows(local_location):
    """Two writers, compactions interleaved with late rows of closed days and copies of rows (a replay): at every
    window, dataset_status_latest with the rollups is that of the rows alone, column for column."""
    rng = random.Random(20)
    now_ms = now_ns() // 1_000_000
    first, second = Writer(Options.resolve(local_location)), Writer(Options.resolve(local_location))
    rows = _updates(rng, 400, now_ms, 15)
    first.write({"dataset_status": rows[:300]})
    second.write({"dataset_status": rows[300:]})
    assert compact(first).rollups_written > 0
    _assert_same_answers(local_location)
    # Late rows of closed days (a backfill), copies of rows (a replay) and rows of the open days, by both writers.
    late = _updates(rng, 150, now_ms - 3 * DAY_MS, 10)
    first.write({"dataset_status": late[:75] + rng.sample(rows, 50)})
    _assert_same_answers(local_location)  # not rolled up yet: the days keep their old rollup, nothing counts twice
    second.write({"dataset_status": late[75:] + _updates(rng, 50, now_ms, 2)})
    assert compact(second).rollups_written > 0
    _assert_same_answers(local_location)
    assert all(len(files) == 1 for files in _rollup_files(local_location).values())


def test_a_late_row_of_a_closed_day_is_in_the_answers_once_the_compaction_rebuilds_that_day(local_location):
    now_ms = now_ns() // 1_000_000
    writer = Writer(Options.resolve(local_location))
    rows = [row | {"ingested_at": row["updated_at"]} for row in _updates(random.Random(3), 100, now_ms - 5 * DAY_MS, 5)]
    writer.write({"dataset_status": rows})
    days = sorted({partition_of(filed_time(row)) for row in rows})
    assert compact(writer).rollups_written == len(days)
    assert compact(writer).rollups_written == 0  # the same files: each day's rollup is current
    newest = max(row["updated_at"] for row in rows) + 1
    late = rows[0] | {"updated_at": newest, "event_time": newest, "ingested_at": newest, "status": "FAILED"}
    writer.write({"dataset_status": [late]})
    assert compact(writer).rollups_written == 1  # that day alone
    now = datetime.datetime.now(datetime.timezone.utc)
    answer = {row[0]: row for row in _latest(local_location, 400, now)}
    assert answer[late["dataset"]][1] == "FAILED"
    assert sorted(_rollup_files(local_location)) == days


def test_only_closed_days_are_rolled_up(local_location):
    now_ms = now_ns() // 1_000_000
    writer = Writer(Options.resolve(local_location))
    writer.write({"dataset_status": _updates(random.Random(4), 60, now_ms, 4)})
    compact(writer)
    days = list(_rollup_files(local_location))
    assert days and max(days) < closed_before() <= partition_of(now_ms - DAY_MS)


def test_a_location_without_rollups_reads_the_rows_alone(local_location):
    """A location written before rollups existed (no dataset_status_daily folder) answers as before."""
    now_ms = now_ns() // 1_000_000
    Writer(Options.resolve(local_location)).write({"dataset_status": _updates(random.Random(5), 80, now_ms, 20)})
    now = datetime.datetime.now(datetime.timezone.utc)
    answer = _latest(local_location, 400, now)
    assert len(answer) == 4
    assert answer == _latest(local_location, 400, now, rollups=False)


@pytest.mark.parametrize("rollup", [False, True])
def test_compact_without_rollup_leaves_the_rollups_alone(local_location, rollup):
    now_ms = now_ns() // 1_000_000
    writer = Writer(Options.resolve(local_location))
    rows = _updates(random.Random(6), 30, now_ms - 4 * DAY_MS, 2)
    writer.write({"dataset_status": rows})
    days = {partition_of(filed_time(row)) for row in rows}
    assert compact(writer, rollup=rollup).rollups_written == (len(days) if rollup else 0)
    assert bool(_rollup_files(local_location)) is rollup


def _runs(rng: random.Random, count: int, now_ms: int, days: int, prefix: str = "r") -> list[dict]:
    """Random rows of runs over the last ``days`` days: STARTED rows (some), runs that end after midnight, retries
    (attempt 2), failures, backfills, runs still going, and copies of rows (a replay)."""
    rows = []
    for number in range(count):
        start = now_ms - rng.randrange(days * DAY_MS)
        if rng.random() < 0.2:  # just before midnight: it ends the next day
            start = start - start % DAY_MS - rng.randrange(1, 30) * MINUTE_MS
        end = start + rng.randrange(1, 180) * MINUTE_MS
        run = {
            # Orchestrators share a run id between jobs (and attempts), never between runs days apart.
            "job_name": ["load_a", "load_b", "report"][number % 3],
            "run_id": f"{prefix}{number // 3}",
            "attempt": rng.choice([None, 1, 2]),
            "start_time": start,
            "run_type": rng.choice(["scheduled"] * 8 + ["backfill", None]),
            "trace_id": f"t{number}",
            "span_id": "s1",
        }
        started = run | {"status": "STARTED", "event_time": start, "ingested_at": start + 100}
        if rng.random() < 0.5:
            rows.append(started)
        if end > now_ms - 30 * MINUTE_MS or rng.random() < 0.03:
            continue  # still going, or hung
        status = rng.choice(["SUCCESS"] * 5 + ["FAILED"])
        terminal = run | {
            "status": status,
            "event_time": end,
            "end_time": end,
            "duration_ms": end - start,
            "records_processed": rng.randrange(1000),
            "ingested_at": end + 200,
        }
        rows.append(terminal)
        if rng.random() < 0.1:
            rows.append(terminal | {"ingested_at": end + 9000})  # a copy, ingested again
    return rows


def _trend(location: str, window: int, now: datetime.datetime) -> list[list[tuple]]:
    """runtime_trend at ``now``, with the rollups then with the rollup table emptied."""
    parameters = catalog.ViewParameters(window_days=window)
    con = local.connect(location, parameters=parameters)
    try:
        catalog.pin_time(con, now, parameters, ())
        query = "SELECT * FROM runtime_trend ORDER BY ALL"
        answers = [con.execute(query).fetchall()]
        con.execute("CREATE TEMP TABLE no_rollups AS SELECT * FROM job_runs_daily WHERE false")
        con.execute("CREATE OR REPLACE VIEW job_runs_daily AS SELECT * FROM no_rollups")
        return [*answers, con.execute(query).fetchall()]
    finally:
        con.close()


def test_runtime_trend_answers_the_same_from_rollups_as_from_the_rows(local_location):
    """Runs that end after midnight, retries, copies, late rows of closed days and compactions in between, two
    writers: runtime_trend with the rollups is that of the rows alone at every window."""
    rng = random.Random(21)
    now_ms = now_ns() // 1_000_000
    first, second = Writer(Options.resolve(local_location)), Writer(Options.resolve(local_location))
    rows = _runs(rng, 600, now_ms, 28)
    first.write({"job_runs": rows[::2]})
    second.write({"job_runs": rows[1::2]})
    assert compact(first).rollups_written > 0
    now = datetime.datetime.now(datetime.timezone.utc)
    for window in (21, 30, 60):
        with_rollups, rows_alone = _trend(local_location, window, now)
        assert with_rollups == rows_alone and with_rollups, window
    # Late runs of closed days (a backfill) and a replay of some rows: the same once rebuilt.
    first.write({"job_runs": _runs(rng, 150, now_ms - 5 * DAY_MS, 15, "late") + rng.sample(rows, 60)})
    assert compact(second).rollups_written > 0
    for window in (21, 30, 60):
        with_rollups, rows_alone = _trend(local_location, window, now)
        assert with_rollups == rows_alone, window


def test_the_report_is_the_same_with_rollups(local_location):
    """The report's figures, charts and tables (the period's, the previous period's, the datasets') are those of the
    rows alone once the compaction has rolled the closed days up."""
    from otel_datasink.report import builder

    rng = random.Random(22)
    now_ms = now_ns() // 1_000_000
    writer = Writer(Options.resolve(local_location))
    # The page draws each update of a dataset: updates of one millisecond would be drawn in the files' order.
    updates = [
        row | {"updated_at": row["updated_at"] + number, "event_time": row["updated_at"] + number}
        for number, row in enumerate(_updates(rng, 300, now_ms, 70))
    ]
    writer.write({"job_runs": _runs(rng, 600, now_ms, 70), "dataset_status": updates})
    now = datetime.datetime.now(datetime.timezone.utc)
    options = Options.resolve(local_location)

    def page() -> str:
        html = builder.build(options, days=30, now=now).html
        # Less what differs between two builds of one page: the time it was made, its charts' gradient ids.
        return re.sub(r"gradient_\d+", "gradient", re.sub(r"generated [^<]* UTC", "", html))

    before = page()
    assert compact(writer).rollups_written > 0
    assert page() == before


def test_a_rollup_left_beside_its_replacement_counts_once_and_goes_at_the_next_compaction(local_location):
    """A compaction stopped between putting a day's new rollup and deleting the old one: the views read the day's
    newest rollup alone, and the next compaction deletes the old one."""
    now_ms = now_ns() // 1_000_000
    writer = Writer(Options.resolve(local_location))
    old = now_ms - 5 * DAY_MS
    run = {"job_name": "j", "status": "SUCCESS", "start_time": old, "end_time": old + 1000, "duration_ms": 1000}
    writer.write({"job_runs": [run | {"run_id": "r1", "event_time": old + 1000, "ingested_at": old + 2000}]})
    compact(writer)
    (replaced,) = glob.glob(f"{local_location}/job_runs_daily/dt={partition_of(old)}/*.parquet")
    kept = Path(replaced).read_bytes()
    writer.write({"job_runs": [run | {"run_id": "r2", "event_time": old + 1000, "ingested_at": old + 2000}]})
    assert compact(writer).rollups_written == 2  # the day and the day before (its rollup reads the day's files)
    Path(replaced).write_bytes(kept)  # the old rollup, back beside its replacement
    now = datetime.datetime.now(datetime.timezone.utc)
    with_rollups, rows_alone = _trend(local_location, 30, now)
    assert with_rollups == rows_alone and [row[3] for row in with_rollups] == [2]
    compact(writer)
    assert len(glob.glob(f"{local_location}/job_runs_daily/dt={partition_of(old)}/*.parquet")) == 1
