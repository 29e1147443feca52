"""``dataset_checks`` and its views, end to end: ``dataset.check`` events of SDK spans through the processor, and
OpenLineage ``dataQualityAssertions`` through a collector process, read back with DuckDB."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from collectors import TRACES, CollectorProcess, post_lineage
from job_spans import DAY_NS, MINUTE_NS, job_span, now_ns, write_spans
from openlineage.client.event_v2 import RunState
from openlineage.client.facet_v2 import data_quality_assertions_dataset, test_run
from openlineage.client.serde import Serde
from openlineage.client.uuid import generate_new_uuid
from openlineage_events import DUCKDB, checked_event, now, singular_test_event
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from otlp_payloads import checked_spans

from otel_datasink import DatasinkSpanProcessor, catalog, job_run, local
from otel_datasink.cli import main

LATEST = "SELECT dataset, check_name, status FROM dataset_checks_latest ORDER BY dataset, check_name"


def _check(name: str, passed, **more) -> dict:
    return {"dataset.name": "orders", "check.name": name, "check.passed": passed, **more}


def test_check_events_of_sdk_spans_through_the_processor_give_rows_and_the_views(local_location):
    provider = TracerProvider()
    provider.add_span_processor(DatasinkSpanProcessor(local_location, schedule_delay=0.1))
    tracer = provider.get_tracer("tests")
    first = now_ns() - 10 * MINUTE_NS
    runs = [
        [
            _check("not_null_orders_id", True, **{"check.assertion": "not_null", "check.column": "id"}),
            _check("row_count", "false", **{"check.actual": 12, "check.expected": ">= 100", "check.severity": "error"}),
        ],
        [_check("row_count", True, **{"check.actual": 1500}), _check("unique_orders_id", 0)],
    ]
    for index, checks in enumerate(runs):
        at = first + index * MINUTE_NS
        with tracer.start_as_current_span("load", attributes={"job.name": "load_orders"}, start_time=at) as span:
            for attributes in checks:
                span.add_event("dataset.check", attributes, timestamp=at + MINUTE_NS // 2)
    assert provider.force_flush(10_000)
    provider.shutdown()

    con = local.connect(local_location, must_exist=True)
    run_ids = [row[0] for row in con.sql("SELECT run_id FROM job_runs_latest ORDER BY start_time").fetchall()]
    stored = con.sql("SELECT check_name, status, actual, run_id, attempt FROM dataset_checks ORDER BY checked_at, 1")
    assert stored.fetchall() == [
        ("not_null_orders_id", "PASSED", None, run_ids[0], 1),
        ("row_count", "FAILED", "12", run_ids[0], 1),
        ("row_count", "PASSED", "1500", run_ids[1], 1),
        ("unique_orders_id", "FAILED", None, run_ids[1], 1),
    ]
    assert con.sql(LATEST).fetchall() == [
        ("orders", "not_null_orders_id", "PASSED"),
        ("orders", "row_count", "PASSED"),  # the second run's result replaces the first's
        ("orders", "unique_orders_id", "FAILED"),
    ]
    failing = con.sql("SELECT check_name, job_name, run_id, checked_at FROM failing_checks").fetchall()
    checked_ms = (first + 3 * MINUTE_NS // 2) // 1_000_000  # the event's time, in the rows' milliseconds
    checked_at = datetime.datetime.fromtimestamp(checked_ms / 1000, tz=datetime.timezone.utc)
    assert failing == [("unique_orders_id", "load_orders", run_ids[1], checked_at)]


def test_check_events_sent_over_otlp_to_a_collector_process_are_checks(local_location, tmp_path):
    collector = CollectorProcess(local_location, tmp_path / "spool", tmp_path / "log", "--flush-age", "3600")
    try:
        exporter = OTLPSpanExporter(endpoint=f"{collector.url}{TRACES}", timeout=10)
        assert exporter.export(checked_spans()).name == "SUCCESS"
        exporter.shutdown()
    finally:
        assert collector.stop() == 0, (tmp_path / "log").read_text()
    con = local.connect(local_location, must_exist=True)
    assert con.sql("SELECT check_name, status, actual, expected FROM dataset_checks_latest ORDER BY 1").fetchall() == [
        ("not_null_id", "PASSED", None, None),
        ("row_count", "FAILED", "12", "100.0"),
    ]


def test_job_run_records_the_checks_of_a_run_that_then_fails(local_location):
    provider = TracerProvider()
    provider.add_span_processor(DatasinkSpanProcessor(local_location, schedule_delay=0.1))
    with pytest.raises(ValueError), job_run("validate_orders", tracer=provider.get_tracer("tests")) as run:
        run.dataset_checked("orders", "row_count", False, assertion="row_count", actual=12, expected=">= 100")
        raise ValueError("too few rows")
    assert provider.force_flush(10_000)
    provider.shutdown()
    con = local.connect(local_location, must_exist=True)
    assert con.sql("SELECT job_name, status FROM job_runs_latest").fetchall() == [("validate_orders", "FAILED")]
    failing = con.sql("SELECT dataset, check_name, assertion, actual, expected, job_name FROM failing_checks")
    assert failing.fetchall() == [("orders", "row_count", "row_count", "12", ">= 100", "validate_orders")]


def test_latest_result_per_check_a_tie_goes_to_failed_copies_count_once_and_bad_times_are_no_result(
    local_location,
):
    n = now_ns()
    older, newer = n - 2 * DAY_NS, n - DAY_NS

    def span(checks, at):
        return job_span("checker", at - MINUTE_NS, at, dataset="orders", checks=checks)

    spans = [
        span([dict(name="a", passed=False)], older),
        span([dict(name="a", passed=True), dict(name="tie", passed=True), dict(name="ahead", passed=True)], newer),
        span([dict(name="tie", passed=False)], newer),  # another run, the same millisecond
        span([dict(name="a", passed=True, dataset="customers")], older),  # one check name, two datasets
        # A clock two days ahead: kept in the table, never the latest result.
        span([dict(name="ahead", passed=False)], n + 2 * DAY_NS),
        # Checked last before the dataset views' window: out of sight.
        span([dict(name="forgotten", passed=False)], n - (catalog.ViewParameters().dataset_window_days + 2) * DAY_NS),
    ]
    write_spans(local_location, spans)
    write_spans(local_location, spans[1:3])  # a replay: copies of the same rows
    con = local.connect(local_location)
    assert con.sql("SELECT count(*) FROM dataset_checks").fetchall() == [(12,)]
    assert con.sql(LATEST).fetchall() == [
        ("customers", "a", "PASSED"),
        ("orders", "a", "PASSED"),
        ("orders", "ahead", "PASSED"),
        ("orders", "tie", "FAILED"),
    ]
    assert con.sql("SELECT dataset, check_name FROM failing_checks").fetchall() == [("orders", "tie")]
    # The operator sees the broken clock's result where every future-dated row is listed.
    ahead = con.sql(
        "SELECT table_name, job_name, status, time_column FROM future_dated_rows WHERE table_name = 'dataset_checks'"
    )
    assert ahead.fetchall() == [("dataset_checks", "checker", "FAILED", "checked_at")]


def test_openlineage_data_quality_assertions_through_a_collector_process_are_checks(local_location, tmp_path):
    assertion = data_quality_assertions_dataset.Assertion
    accepted_values = "accepted_values_orders_status__placed__shipped__completed__returned"
    assertions = [
        # dbt-ol with dbt >= 1.8 (manifest v12): the assertion is the test's name, actual its failures.
        assertion("not_null_orders_order_id", True, "order_id", "error", actual="0", expected="0"),
        assertion("unique_orders_order_id", True, "order_id", "error", actual="0", expected="0"),
        assertion(accepted_values, False, "status", "warn", actual="3", expected="0"),
        # Older dbt-ol: the generic test's name alone, told apart by the column.
        assertion("not_null", False, "customer_id"),
        # The spec's name field.
        assertion("custom_sql", True, name="assert_no_orphans", description="orders of known customers"),
    ]
    run_id = str(generate_new_uuid())
    started = now()
    collector = CollectorProcess(local_location, tmp_path / "spool", tmp_path / "log", "--flush-age", "3600")
    try:
        for kind, at in ((RunState.START, started), (RunState.COMPLETE, started + datetime.timedelta(seconds=2))):
            body = Serde.to_json(checked_event(at, run_id, assertions, model="orders", kind=kind)).encode()
            assert post_lineage(collector.port, body)[0] == 200
    finally:
        assert collector.stop() == 0, (tmp_path / "log").read_text()

    con = local.connect(local_location, must_exist=True)
    found = con.sql(
        "SELECT check_name, status, assertion, column_name, actual, expected, severity FROM dataset_checks_latest "
        "ORDER BY check_name"
    ).fetchall()
    assert found == [
        (accepted_values, "FAILED", accepted_values, "status", "3", "0", "warn"),
        ("assert_no_orphans", "PASSED", "custom_sql", None, None, None, None),
        ("not_null(customer_id)", "FAILED", "not_null", "customer_id", None, None, None),
        ("not_null_orders_order_id", "PASSED", "not_null_orders_order_id", "order_id", "0", "0", "error"),
        ("unique_orders_order_id", "PASSED", "unique_orders_order_id", "order_id", "0", "0", "error"),
    ]
    # One result per assertion: the START event, which carries them too, checks nothing.
    stored = con.sql("SELECT DISTINCT dataset, job_name, run_id, count(*) OVER () FROM dataset_checks").fetchall()
    assert stored == [(f"{DUCKDB}/jaffle.main.orders", "jaffle.main.jaffle_shop.orders.test", run_id, 5)]
    assert sorted(con.sql("SELECT check_name FROM failing_checks").fetchall()) == [
        (accepted_values,),
        ("not_null(customer_id)",),
    ]
    # The test run updates no dataset: it has no output.
    assert con.sql("SELECT count(*) FROM dataset_status").fetchall() == [(0,)]


def test_replayed_singular_dbt_tests_are_checks_of_each_model_they_read(local_location, tmp_path):
    payments = "test.jaffle_shop.assert_positive_total_for_payments"
    events = [
        singular_test_event(
            now(),
            str(generate_new_uuid()),
            test_run.TestExecution(name=payments, status="fail", severity="error", actual="2", expected="0"),
            models=["orders", "payments"],
        ),
        # A skipped test ran nothing: no result.
        singular_test_event(
            now(),
            str(generate_new_uuid()),
            test_run.TestExecution(name="test.jaffle_shop.assert_skipped", status="skip"),
            models=["orders"],
        ),
    ]
    lines = tmp_path / "openlineage.jsonl"
    lines.write_text("".join(Serde.to_json(event) + "\n" for event in events))
    assert main(["replay", "--location", local_location, "--no-progress", str(lines)]) == 0
    con = local.connect(local_location)
    # Named as dbt-ol names it in a model's assertions (the test's name, not its unique id): one check, not two.
    name = "assert_positive_total_for_payments"
    assert con.sql(
        "SELECT dataset, check_name, status, actual, expected, severity FROM failing_checks ORDER BY dataset"
    ).fetchall() == [
        (f"{DUCKDB}/jaffle.main.orders", name, "FAILED", "2", "0", "error"),
        (f"{DUCKDB}/jaffle.main.payments", name, "FAILED", "2", "0", "error"),
    ]
    assert con.sql("SELECT count(*) FROM dataset_checks").fetchall() == [(2,)]


def test_a_location_written_before_the_checks_table_existed_reads_with_the_check_views_empty(local_location):
    n = now_ns()
    write_spans(local_location, [job_span("load_orders", n - 2 * MINUTE_NS, n - MINUTE_NS, dataset="orders")])
    assert sorted(path.name for path in Path(local_location).iterdir()) == [
        "dataset_status",
        "job_runs",
    ]
    con = local.connect(local_location, must_exist=True)
    assert con.sql("SELECT count(*) FROM dataset_checks").fetchall() == [(0,)]
    assert con.sql("SELECT * FROM dataset_checks_latest").fetchall() == []
    assert con.sql("SELECT * FROM failing_checks").fetchall() == []
    assert con.sql("SELECT job_name, status FROM job_runs_latest").fetchall() == [("load_orders", "SUCCESS")]
