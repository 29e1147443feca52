"""``otel-datasink query`` and ``status`` over rows the real pipeline wrote."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from job_spans import HOUR_NS, MINUTE_NS, job_span, now_ns, write_spans

from otel_datasink.cli import main


def _write(location: str, *, stale: bool) -> None:
    n = now_ns()
    spans = [
        job_span(
            "load_orders",
            n - 15 * MINUTE_NS,
            n - 10 * MINUTE_NS,
            records=7,
            dataset="orders",
            updates=[dict(name="orders", record_count=70, freshness_sla_minutes=60)],
        )
    ]
    if stale:
        spans.append(
            job_span(
                "load_customers",
                n - 4 * HOUR_NS,
                n - 3 * HOUR_NS,
                updates=[dict(name="customers", freshness_sla_minutes=60)],
            )
        )
    write_spans(location, spans)


def test_query_prints_an_aligned_table(local_location, capsys):
    _write(local_location, stale=False)
    assert (
        main(
            [
                "query",
                "--location",
                local_location,
                "SELECT job_name, records_processed, error_type FROM job_runs_latest",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["job_name", "records_processed", "error_type"]
    assert lines[2].split() == ["load_orders", "7", "NULL"]
    assert lines[-1] == "(1 row)"
    # Numbers are right-aligned under their header.
    assert lines[2].index("7") == lines[0].index("records_processed") + len("records_processed") - 1


def test_query_prints_json_and_csv_for_tools(local_location, capsys):
    _write(local_location, stale=False)
    query = "SELECT job_name, status, end_time, attributes, error_type FROM job_runs_latest"
    assert main(["query", "--location", local_location, "--format", "json", query]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert (record["job_name"], record["status"], record["attributes"], record["error_type"]) == (
        "load_orders",
        "SUCCESS",
        {},
        None,
    )
    assert record["end_time"].endswith("+00:00")
    assert main(["query", "--location", local_location, "--format", "csv", query]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["job_name"], r["status"], r["error_type"]) for r in rows] == [("load_orders", "SUCCESS", "")]


def test_query_runs_athena_sql_with_the_same_meaning(local_location, capsys):
    _write(local_location, stale=False)
    query = "SELECT date_diff('minute', start_time, end_time) AS minutes FROM job_runs_latest"
    assert main(["query", "--location", local_location, "--format", "json", "--dialect", "athena", query]) == 0
    assert json.loads(capsys.readouterr().out) == [{"minutes": 5}]


def test_query_reports_a_bad_query_on_one_line_without_a_traceback(local_location, capsys):
    _write(local_location, stale=False)
    assert main(["query", "--location", local_location, "SELECT * FROM no_such_table"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    # DuckDB's hint is kept, its query excerpt and caret (lines after a blank one) are not.
    assert line.startswith("otel-datasink query: Catalog Error: Table with name no_such_table does not exist!")
    assert "LINE 1" not in line


def test_status_lists_stale_datasets_first_and_exits_zero_without_the_flag(local_location, capsys):
    _write(local_location, stale=True)
    assert main(["status", "--location", local_location, "--format", "json"]) == 0
    captured = capsys.readouterr()
    datasets = json.loads(captured.out)
    assert [(d["dataset"], d["is_stale"], d["freshness_minutes"]) for d in datasets] == [
        ("customers", True, 180),
        ("orders", False, 10),
    ]
    assert "1 stale dataset(s): customers" in captured.err


@pytest.mark.parametrize(("stale", "code"), [(True, 1), (False, 0)])
def test_status_fail_on_stale_sets_the_exit_status(local_location, stale, code):
    _write(local_location, stale=stale)
    result = subprocess.run(
        [sys.executable, "-m", "otel_datasink.cli", "status", "--location", local_location, "--fail-on-stale"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == code, result.stderr
    assert "orders" in result.stdout


def test_status_on_an_empty_location_is_an_error_unless_allowed(tmp_path, capsys):
    command = ["status", "--location", str(tmp_path / "none"), "--fail-on-stale", "--format", "csv"]
    assert main(command) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"otel-datasink status: {tmp_path / 'none'} does not exist (--allow-empty accepts a location with no tables)"
    ]
    assert main([*command, "--allow-empty"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "dataset,is_stale,last_status,last_success_at,data_as_of,freshness_minutes,freshness_sla_minutes,"
        "record_count,last_job_name"
    ]
