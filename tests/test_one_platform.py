"""One collector for a whole platform (issue 18): the real captures of Airflow 3.3 (traces and OpenLineage), dbt-ol
(``dbt run`` and ``dbt test``) and Prefect 3, replayed together into one location with no profile, give exactly
the rows each gives alone: every producer is recognised at once, and none changes what another's rows say."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_datasink import local
from otel_datasink.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
PRODUCERS = {
    "airflow": [FIXTURES / "airflow_3_3" / "traces.jsonl", FIXTURES / "airflow_3_3" / "openlineage.jsonl"],
    "dbt": [
        FIXTURES / "openlineage" / "dbt" / "dbt-ol-run.jsonl",
        FIXTURES / "openlineage" / "dbt" / "dbt-ol-test.jsonl",
    ],
    "prefect": [FIXTURES / "prefect" / "orders_etl_retries.jsonl"],
}
TABLES = {
    "job_runs": "job_name, run_id, attempt, status, start_time, end_time, error_type, error_message, dataset, "
    "parent_job_name, parent_run_id, owners, inputs",
    "dataset_status": "dataset, status, updated_at, record_count, job_name, run_id",
    "dataset_checks": "dataset, check_name, status, actual, job_name, run_id",
}


def _rows(location: str) -> dict[str, list[tuple]]:
    with local.connect(location) as con:
        return {
            table: sorted(con.execute(f"SELECT {columns} FROM {table}").fetchall(), key=repr)
            for table, columns in TABLES.items()
        }


def _replay(location: Path, files: list[Path]) -> dict[str, list[tuple]]:
    assert main(["replay", "--location", str(location), "--no-progress", *map(str, files)]) == 0
    return _rows(str(location))


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> dict[str, dict[str, list[tuple]]]:
    """Each producer's payloads replayed into a location of its own."""
    return {name: _replay(tmp_path_factory.mktemp(name), files) for name, files in PRODUCERS.items()}


def test_every_producer_replayed_into_one_location_gives_the_rows_it_gives_alone(tmp_path, alone):
    together = _replay(tmp_path / "platform", [file for files in PRODUCERS.values() for file in files])

    for table in TABLES:
        expected = sorted((row for rows in alone.values() for row in rows[table]), key=repr)
        assert together[table] == expected, table
    # Each producer made rows of its own, so the comparison above compares something.
    assert all(rows["job_runs"] for rows in alone.values())
    assert alone["dbt"]["dataset_checks"]
