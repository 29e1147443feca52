"""The pytest plugin, as a user's test suite sees it: run in a separate pytest process by pytester."""

from __future__ import annotations

pytest_plugins = ["pytester"]

USER_TESTS = '''
import pytest
from otel_datasink import job_run


def ingest_orders(tracer, rows):
    """The user's job, instrumented with the helper over a standard span."""
    with job_run("ingest_orders", dataset="orders", tracer=tracer) as run:
        if not rows:
            raise ValueError("no rows to ingest")
        run.add_records(len(rows))
        run.dataset_updated("orders", records_written=len(rows), freshness_sla_minutes=60)


def test_a_successful_run_is_fresh(datasink_tracer_provider, datasink_db):
    ingest_orders(datasink_tracer_provider.get_tracer("jobs"), [1, 2, 3])
    assert datasink_db.sql("SELECT status, records_processed FROM job_runs_latest") == [("SUCCESS", 3)]
    assert datasink_db.rows("SELECT dataset, is_stale FROM dataset_status_latest") == [
        {"dataset": "orders", "is_stale": False}
    ]


def test_a_failing_run_is_recorded(datasink_tracer_provider, datasink_db):
    with pytest.raises(ValueError):
        ingest_orders(datasink_tracer_provider.get_tracer("jobs"), [])
    (failure,) = datasink_db.rows("SELECT * FROM recurring_failures")
    assert (failure["job_name"], failure["current_streak"], failure["last_error_type"]) == (
        "ingest_orders", 1, "ValueError")


def test_a_query_before_any_run_sees_empty_views(datasink_db, datasink_location):
    assert datasink_db.sql("SELECT count(*) FROM stale_datasets") == [(0,)]
    assert datasink_location.endswith("datasink")


def test_a_wrong_expectation_fails(datasink_tracer_provider, datasink_db):
    ingest_orders(datasink_tracer_provider.get_tracer("jobs"), [1])
    assert datasink_db.sql("SELECT status FROM job_runs_latest") == [("FAILED",)]
'''


def test_fixtures_give_users_a_location_a_provider_and_the_views(pytester):
    pytester.makepyfile(test_user_job=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_a_wrong_expectation_fails*"])


def test_fixtures_are_listed_with_their_documentation(pytester):
    result = pytester.runpytest_subprocess("--fixtures", "-q")
    result.stdout.fnmatch_lines(["datasink_location*", "datasink_tracer_provider*", "datasink_db*"])
