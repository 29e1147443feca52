"""Each example in ``examples/`` runs as a user would run it and leaves the rows its docstring promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, location: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OTEL_EXPORTER_DATASINK_LOCATION": location, "OTEL_SERVICE_NAME": "example-service"}
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    # Nothing is written to the default ./datasink: the environment variable was honoured.
    assert not (tmp_path / "datasink").exists()
    return completed


@pytest.mark.parametrize("name", ["plain_otel_batch_job.py", "job_run_batch_job.py"])
def test_batch_examples_write_a_successful_run_and_its_dataset_update(name, tmp_path, read_tables):
    location = str(tmp_path / "tables")
    run_example(name, location, tmp_path)
    tables = read_tables(location)

    runs = tables.rows("job_runs")
    assert sorted(row["status"] for row in runs) == ["STARTED", "SUCCESS"]
    [run] = [row for row in runs if row["status"] == "SUCCESS"]
    assert (run["job_name"], run["dataset"], run["job_type"], run["run_type"]) == (
        "ingest_orders",
        "warehouse.orders",
        "batch",
        "scheduled",
    )
    assert run["records_processed"] == 1200
    assert run["logical_date"] is not None and run["logical_date"] < run["start_time"]
    expected_service = "orders-etl" if name.startswith("plain") else "example-service"
    assert run["service_name"] == expected_service

    [update] = tables.rows("dataset_status")
    assert (update["dataset"], update["status"], update["run_id"]) == ("warehouse.orders", "SUCCESS", run["run_id"])
    assert 0 < update["records_written"] <= 1200
    assert update["record_count"] == 250_000 + update["records_written"]
    assert update["freshness_sla_minutes"] == 26 * 60
    assert run["logical_date"] < update["watermark"] < run["start_time"]


def test_streaming_example_writes_one_run_per_micro_batch(tmp_path, read_tables):
    location = str(tmp_path / "tables")
    completed = run_example("streaming_job.py", location, tmp_path, "5")
    assert "poison record" in completed.stderr
    tables = read_tables(location)

    runs = [row for row in tables.rows("job_runs") if row["status"] != "STARTED"]
    assert len(runs) == len({row["run_id"] for row in runs}) == 5
    assert {(row["job_name"], row["job_type"]) for row in runs} == {("clickstream_sessions", "streaming")}
    assert sorted(row["status"] for row in runs) == ["FAILED"] + ["SUCCESS"] * 4
    [failed] = [row for row in runs if row["status"] == "FAILED"]
    assert failed["error_type"] == "ValueError" and "poison record" in failed["error_message"]

    updates = tables.rows("dataset_status")
    successes = {row["run_id"] for row in runs if row["status"] == "SUCCESS"}
    assert {row["run_id"] for row in updates} == successes
    assert {(row["dataset"], row["freshness_sla_minutes"]) for row in updates} == {("analytics.sessions", 5)}
    assert all(row["watermark"] <= row["updated_at"] for row in updates)
