"""What ``demo``, ``query`` and ``compact`` print: one table renderer (the same booleans and timestamps), tables
fitted to the terminal with a hint, sizes for humans."""

from __future__ import annotations

import re

import pytest
from command_line import assert_one_line_failure, cli
from job_spans import MINUTE_NS, job_span, now_ns, write_spans

from otel_datasink.commands._output import table_lines
from otel_datasink.sizes import human_size, parse_size

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+00:00")


@pytest.fixture
def location(tmp_path) -> str:
    """A location with one successful run of ``load`` updating ``orders``."""
    location = str(tmp_path / "datasink")
    n = now_ns()
    write_spans(location, [job_span("load", n - 2 * MINUTE_NS, n - MINUTE_NS, dataset="orders")])
    return location


def test_demo_and_query_print_booleans_and_timestamps_the_same_way(tmp_path, location):
    demo = cli("demo", "--location", str(tmp_path / "demo"))
    assert demo.returncode == 0, demo.stderr
    sql = "SELECT dataset, is_stale, last_success_at FROM dataset_status_latest"
    query = cli("query", "--location", location, sql)
    assert query.returncode == 0, query.stderr
    for out in (demo.stdout, query.stdout):
        assert "True" not in out and "False" not in out
        assert re.search(r"\bfalse\b", out), out
        assert TIMESTAMP.search(out), out
        assert "┌" not in out  # DuckDB's own box drawing is gone from the demo
    row = query.stdout.splitlines()[2].split(maxsplit=2)
    assert row[:2] == ["orders", "false"] and TIMESTAMP.fullmatch(row[2])


def test_a_wide_table_is_fitted_to_the_terminal_with_a_hint(location):
    done = cli("query", "--location", location, "SELECT * FROM job_runs", COLUMNS="80")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines[:-1]), lines
    assert lines[0].split()[:2] == ["run_id", "job_name"]
    assert "more column(s) not shown: " in lines[-1] and "use --format csv for every column and value" in lines[-1]


def test_status_on_a_narrow_terminal_keeps_the_freshness_and_its_sla_and_leaves_the_instants_out(tmp_path):
    location = str(tmp_path / "datasink")
    n = now_ns()
    for job, dataset, hours in (("load_orders", "warehouse.orders", 3), ("load_customers", "warehouse.customers", 0)):
        update = dict(name=dataset, freshness_sla_minutes=60, record_count=120_000)
        write_spans(
            location,
            [job_span(job, n - hours * 60 * MINUTE_NS - 2 * MINUTE_NS, n - hours * 60 * MINUTE_NS, updates=[update])],
        )
    done = cli("status", "--location", location, COLUMNS="100")
    assert done.returncode == 0, done.stderr
    *table, footer = done.stdout.splitlines()
    assert all(len(line) <= 100 for line in table), table
    shown = table[0].split()
    assert shown[:2] == ["dataset", "is_stale"]
    assert {"freshness_minutes", "freshness_sla_minutes"} <= set(shown)
    assert not TIMESTAMP.search(done.stdout)
    assert "not shown: last_success_at, data_as_of" in footer
    assert table[2].split()[:2] == ["warehouse.orders", "true"]


def test_a_pipe_gets_every_column(location):
    # No terminal and no COLUMNS: a script reading the table sees all of it.
    done = cli("query", "--location", location, "SELECT * FROM job_runs")
    assert done.stdout.splitlines()[0].split()[-1] == "dt" and "not shown" not in done.stdout


def test_the_demo_hints_at_query_when_cut(tmp_path):
    done = cli("demo", "--location", str(tmp_path / "demo"), COLUMNS="60")
    assert done.returncode == 0, done.stderr
    assert "see them all with otel-datasink query --format csv" in done.stdout


def test_table_lines_cut_long_values_before_leaving_columns_out():
    lines = table_lines(["id", "message", "n"], [("a", "x" * 100, 1)], width=60)
    assert lines[0].split() == ["id", "message", "n"]
    assert lines[2].split()[1].endswith("…") and max(len(line) for line in lines[:-1]) <= 60
    assert lines[-1] == "(1 row; long values cut, ending in …; use --format csv for every column and value)"


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (25_436_648, "24.3 MiB"), (3 * 1024**3, "3.0 GiB")],
)
def test_sizes_are_for_humans(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("text", "size"), [("4096", 4096), ("1.5K", 1536), ("128MB", 128 * 1024**2), ("128 MiB", 128 * 1024**2)]
)
def test_sizes_are_read_in_binary_units(text, size):
    assert parse_size(text) == size


def test_a_target_size_that_is_no_size_is_a_usage_error_saying_why(location):
    done = cli("compact", "--location", location, "--target-size", "12X")
    assert_one_line_failure(done, "compact", "argument --target-size: not a size: '12X' (e.g. 128MB, 1GB)")


def test_compact_prints_sizes_for_humans(location):
    n = now_ns()
    write_spans(location, [job_span("load", n - 2 * MINUTE_NS, n - MINUTE_NS, dataset="orders")])
    plan = cli("compact", "--location", location, "--dry-run")
    assert re.search(r"\d+\.\d KiB -> 1", plan.stdout), plan.stdout
    done = cli("compact", "--location", location, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert re.search(r"wrote \d+ file\(s\) \(\d+\.\d KiB\)", done.stdout) and "bytes" not in done.stdout
