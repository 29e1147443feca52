"""Backfills: logical date and run type reach the tables, and the views do not mistake old data for new.

The backfill is ``examples/backfill_job.py``, run as a user runs it; the scheduled history beside it is
written through the exporter with explicit times. The answers are read from the views of
:func:`otel_datasink.local.connect`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_datasink import local
from otel_datasink.exporter import DatasinkSpanExporter

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "backfill_job.py"
HOUR_NS = 3_600 * 10**9


def _scheduled_runs(location: str, runs: list[tuple[int, int]]) -> None:
    """Scheduled runs of ingest_orders: (hours ago it ended, records processed), each updating warehouse.orders."""
    provider = TracerProvider(resource=Resource.create({"service.name": "orders-etl"}))
    provider.add_span_processor(SimpleSpanProcessor(DatasinkSpanExporter(location)))
    tracer = provider.get_tracer("test")
    now = time.time_ns()
    for hours_ago, records in runs:
        end = now - hours_ago * HOUR_NS
        span = tracer.start_span(
            "ingest_orders",
            start_time=end - 600 * 10**9,
            attributes={
                "job.name": "ingest_orders",
                "dataset.name": "warehouse.orders",
                "job.run.type": "scheduled",
                "job.records_processed": records,
            },
        )
        span.add_event(
            "dataset.update",
            {"dataset.name": "warehouse.orders", "dataset.freshness_sla_minutes": 26 * 60},
            timestamp=end,
        )
        span.end(end_time=end)
    provider.shutdown()


def _backfill(location: str, start: str, end: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--start", start, "--end", end, "--location", location],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_backfill_rows_carry_run_type_and_logical_date(local_location, read_tables):
    _backfill(local_location, "2026-01-01", "2026-01-03")
    runs = [r for r in read_tables(local_location).rows("job_runs") if r["status"] == "SUCCESS"]
    assert sorted((r["run_type"], r["logical_date"]) for r in runs) == [
        ("backfill", datetime(2026, 1, day, tzinfo=timezone.utc)) for day in (1, 2, 3)
    ]
    updates = read_tables(local_location).rows("dataset_status")
    # No watermark given: a backfill's data is as new as its logical date.
    assert sorted(u["watermark"] for u in updates) == [datetime(2026, 1, day, tzinfo=timezone.utc) for day in (1, 2, 3)]


def test_backfill_of_old_data_does_not_make_the_dataset_look_fresh(local_location):
    _scheduled_runs(local_location, [(50, 1000)])  # the last scheduled load: 50 hours ago, SLA 26 hours
    _backfill(local_location, "2026-01-01", "2026-01-07")  # runs now, for January

    con = local.connect(local_location)
    freshness, is_stale, last_success = con.execute(
        "SELECT freshness_minutes, is_stale, last_success_at FROM dataset_status_latest "
        "WHERE dataset = 'warehouse.orders'"
    ).fetchone()
    assert freshness >= 49 * 60  # still the scheduled load's age, not minutes
    assert is_stale
    assert last_success.date() == datetime.now(timezone.utc).date()  # the backfill did run successfully
    assert con.execute("SELECT dataset FROM stale_datasets").fetchall() == [("warehouse.orders",)]


def test_runtime_trend_and_volume_anomalies_tell_backfills_apart(local_location):
    # A steady scheduled history, then a backfill whose runs process ten times as much.
    _scheduled_runs(local_location, [(24 * day + 2, 1000 + day % 3) for day in range(1, 10)])
    _backfill(local_location, "2026-01-01", "2026-01-03")
    _scheduled_runs(local_location, [(0, 1500)])  # today's scheduled run: a spike against scheduled runs only

    con = local.connect(local_location)
    trend = con.execute(
        "SELECT run_date, is_backfill, runs FROM runtime_trend WHERE job_name = 'ingest_orders' AND is_backfill"
    ).fetchall()
    assert [(run_date, is_backfill, runs) for run_date, is_backfill, runs in trend] == [
        (datetime.now(timezone.utc).date(), True, 3)
    ]
    scheduled_days = con.execute(
        "SELECT count(*) FROM runtime_trend WHERE job_name = 'ingest_orders' AND NOT is_backfill"
    ).fetchone()[0]
    assert scheduled_days >= 9

    anomalies = con.execute("SELECT run_type, records_processed, direction FROM volume_anomalies").fetchall()
    # The backfills are judged (they are far off) but are no part of the baseline, so today's scheduled
    # 1500 stands out against the ~1000 of the scheduled runs.
    assert ("scheduled", 1500, "spike") in anomalies
    assert all(run_type in ("scheduled", "backfill") for run_type, _, _ in anomalies)
