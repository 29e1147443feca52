"""``dbt test`` through dbt-ol, from real events (``tests/fixtures/openlineage/dbt``): a dbt test is a check of the
dataset it tests, not a job run, and its audit table is no dataset; the results match dbt's own record of them,
the ``target/run_results.json`` each fixture was captured with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openlineage_events import FIXTURES

from otel_datasink import local
from otel_datasink.catalog import ViewParameters
from otel_datasink.cli import main

DBT = FIXTURES / "dbt"
SHOP = "duckdb://target/shop.duckdb/shop.main"
EVER = ViewParameters(window_days=36_500, dataset_window_days=36_500, failure_days=36_500)
"""The views over every day: the fixtures' events keep the day they were captured."""
TESTED = {
    "accepted_values_orders_status_code__0__1__2": "orders",
    "not_null_orders_order_id": "orders",
    "unique_orders_order_id": "orders",
    "orders_under_90": "orders",
    "not_null_daily_revenue_order_date": "daily_revenue",
    "unique_daily_revenue_order_date": "daily_revenue",
    "revenue_is_positive": "daily_revenue",
}
"""The model each data test of examples/dbt_openlineage reads (models/schema.yml, tests/*.sql)."""
INVOCATION = {"test": "dbt-test-shop", "build": "dbt-run-shop"}
"""The wrapping job of each capture: named by ``--openlineage-dbt-job-name`` for ``dbt test``, dbt-ol's default
(``dbt-run-<project>``, whatever the command) for ``dbt build``."""


def replayed(location: str, *names: str) -> None:
    files = [str(DBT / name) for name in names]
    assert main(["replay", "--location", location, "--no-progress", *files]) == 0


def dbt_ran(fixture: str) -> set[tuple[str, str, str, str]]:
    """(dataset, test name, PASSED/FAILED, failures) of each test dbt ran, from its run_results.json: a skipped
    test has no result."""
    results = json.loads((DBT / fixture.replace(".jsonl", ".run_results.json")).read_text())["results"]
    ran = set()
    for result in results:
        kind, _, name, *_ = result["unique_id"].split(".")  # test.<project>.<name>[.<hash>]
        if kind == "test" and result["status"] in ("pass", "fail"):
            status = "PASSED" if result["status"] == "pass" else "FAILED"
            ran.add((f"{SHOP}.{TESTED[name]}", name, status, str(result["failures"])))
    return ran


@pytest.mark.parametrize(
    "fixture",
    [
        "dbt-ol-test.jsonl",
        "dbt-ol-test-structured-logs.jsonl",
        "dbt-ol-build.jsonl",
        "dbt-ol-build-structured-logs.jsonl",
    ],
)
def test_dbt_tests_are_checks_of_their_models_matching_run_results_and_never_runs_or_datasets(tmp_path, fixture):
    location = str(tmp_path / "datasink")
    replayed(location, fixture)
    con = local.connect(location, parameters=EVER, must_exist=True)
    expected = dbt_ran(fixture)
    assert {row[2] for row in expected} == {"PASSED", "FAILED"}  # the fixture has both

    stored = con.sql("SELECT DISTINCT dataset, check_name, status, actual FROM dataset_checks").fetchall()
    assert set(stored) == expected
    latest = con.sql("SELECT dataset, check_name, status, actual FROM dataset_checks_latest").fetchall()
    assert sorted(latest) == sorted(expected)  # one result per test and dataset
    failing = con.sql("SELECT check_name FROM failing_checks ORDER BY 1").fetchall()
    assert failing == [("accepted_values_orders_status_code__0__1__2",), ("orders_under_90",)]

    # Each check is the invocation's: its job and run are the dbt command's, which has job_runs rows.
    invocation = INVOCATION[fixture.split("-")[2].split(".")[0]]
    checked_by = con.sql("SELECT DISTINCT job_name, run_id FROM dataset_checks").fetchall()
    runs = con.sql("SELECT DISTINCT job_name, run_id FROM job_runs WHERE parent_job_name IS NULL").fetchall()
    assert checked_by == runs and checked_by[0][0] == invocation

    # No run of a test node (nor of its SQL statements), no dataset of its audit table.
    jobs = {row[0] for row in con.sql("SELECT DISTINCT job_name FROM job_runs").fetchall()}
    assert not [job for job in jobs if job.startswith("test.") or job.endswith(".test")]
    assert con.sql("SELECT count(*) FROM job_runs WHERE attributes['openlineage.job.type'] = 'TEST'").fetchall() == [
        (0,)
    ]
    datasets = {row[0] for row in con.sql("SELECT DISTINCT dataset FROM dataset_status").fetchall()}
    assert not [dataset for dataset in datasets if "dbt_test__audit" in dataset]
    if fixture.startswith("dbt-ol-test"):
        assert jobs == {invocation} and datasets == set()


@pytest.mark.parametrize("mode", ["", "-structured-logs"])
def test_models_of_dbt_build_stay_runs_and_update_their_datasets(tmp_path, mode):
    location = str(tmp_path / "datasink")
    replayed(location, f"dbt-ol-build{mode}.jsonl")
    con = local.connect(location, parameters=EVER)
    model = "model.shop.orders" if mode else "shop.main.shop.orders.build.run"
    assert con.sql(
        "SELECT status, parent_job_name FROM job_runs_latest WHERE job_name = ?", params=[model]
    ).fetchall() == [("SUCCESS", "dbt-run-shop")]
    assert con.sql(
        "SELECT last_status FROM dataset_status_latest WHERE dataset = ?", params=[f"{SHOP}.orders"]
    ).fetchall() == [("SUCCESS",)]


def test_dbt_test_and_dbt_run_are_separate_jobs_with_separate_failure_streaks(tmp_path):
    location = str(tmp_path / "datasink")
    replayed(location, "dbt-ol-run.jsonl", "dbt-ol-test.jsonl", "dbt-ol-run-structured-logs.jsonl")
    con = local.connect(location, parameters=EVER)
    invocations = con.sql(
        "SELECT job_name, count(*) FROM job_runs_latest WHERE parent_job_name IS NULL AND status = 'FAILED' "
        "GROUP BY job_name ORDER BY job_name"
    ).fetchall()
    assert invocations == [("dbt-run-shop", 2), ("dbt-test-shop", 1)]
    # Failing tests are failing checks, not failing jobs: the failures are the models' and the invocations'.
    streaks = con.sql("SELECT job_name, current_streak FROM recurring_failures ORDER BY job_name").fetchall()
    assert streaks == [
        ("dbt-run-shop", 2),
        ("dbt-test-shop", 1),
        ("model.shop.order_status", 1),
        ("model.shop.order_status.sql.2", 1),
        ("shop.main.shop.order_status", 1),
    ]


def test_a_location_holding_only_dbt_test_checks_opens(tmp_path):
    location = str(tmp_path / "datasink")
    lines = [line for line in (DBT / "dbt-ol-test.jsonl").read_text().splitlines() if '"jobType": "TEST"' in line]
    only_tests = Path(tmp_path / "tests.jsonl")
    only_tests.write_text("\n".join(lines) + "\n")
    assert main(["replay", "--location", location, "--no-progress", str(only_tests)]) == 0
    con = local.connect(location, parameters=EVER, must_exist=True)
    assert con.sql("SELECT count(DISTINCT check_name) FROM dataset_checks").fetchall() == [(7,)]
