"""The Athena DDL: generated from the one schema, parsable, partition-projected, typed as the writer writes."""

from __future__ import annotations

import glob
import re
import time

import pyarrow.parquet as pq
import pytest
import sqlglot
from job_spans import MINUTE_NS, job_span, now_ns, write_spans
from sqlglot import exp

from otel_datasink import catalog
from otel_datasink.cli import main
from otel_datasink.compact import compact
from otel_datasink.config import Options
from otel_datasink.schema import ROLLUPS, STORED_TABLES, TABLES
from otel_datasink.writer import Writer

LOCATION = "s3://acme-monitoring/datasink"


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip() and not s.strip().startswith("-- otel")]


def test_the_whole_script_parses_as_athena_sql():
    script = catalog.athena_ddl(LOCATION)
    parsed = sqlglot.parse(script, read="athena")
    creates = [e for e in parsed if isinstance(e, exp.Create)]
    names = [(e.args["kind"], e.find(exp.Table).db, e.find(exp.Table).name) for e in creates]
    assert names == [
        ("DATABASE", "", "monitoring"),
        ("TABLE", "monitoring", "job_runs"),
        ("TABLE", "monitoring", "dataset_status"),
        ("TABLE", "monitoring", "alerts"),
        ("TABLE", "monitoring", "dataset_checks"),
        ("TABLE", "monitoring", "sla_results"),
        ("TABLE", "monitoring", "job_runs_daily"),
        ("TABLE", "monitoring", "dataset_status_daily"),
        *(("VIEW", "monitoring", view) for view in catalog.VIEWS),
    ]


def test_tables_are_external_partitioned_by_dt_and_projected():
    for statement, table in zip(catalog.athena_tables(LOCATION + "/"), STORED_TABLES, strict=True):
        create = sqlglot.parse_one(statement, read="athena")
        assert create.find(exp.ExternalProperty) is not None
        assert "PARTITIONED BY (`dt` STRING)" in create.sql(dialect="athena")
        assert "STORED AS PARQUET" in statement
        assert f"LOCATION '{LOCATION}/{table}/'" in statement
        properties = dict(re.findall(r"'([^']+)'='([^']*)'", statement))
        assert properties == {
            "projection.enabled": "true",
            "projection.dt.type": "date",
            "projection.dt.format": "yyyy-MM-dd",
            "projection.dt.range": "2020-01-01,NOW+1DAYS",  # rows a day ahead (the clock tolerance) too
            "projection.dt.interval": "1",
            "projection.dt.interval.unit": "DAYS",
            "storage.location.template": f"{LOCATION}/{table}/dt=${{dt}}",
        }


# What Athena engine v3 calls each Parquet column the writer produces: (physical type, logical type) -> type.
_ATHENA_READS = {
    ("BYTE_ARRAY", "String"): "string",
    ("INT64", "None"): "bigint",
    ("BOOLEAN", "None"): "boolean",
    (
        "INT64",
        "Timestamp(isAdjustedToUTC=true, timeUnit=milliseconds, is_from_converted_type=false, "
        "force_set_converted_type=false)",
    ): "timestamp",
}


_ALERT_ROW = {
    "incident_id": "0123abcd",
    "kind": "stale_dataset",
    "subject": "orders",
    "severity": "warning",
    "state": "FIRING",
    "opened_at": 1_780_000_000_000,
    "notified_at": 1_780_000_000_000,
    "targets": "json://localhost/",
    "delivered": True,
    "summary": "orders is 185 min old, SLA 60 min",
    "details": "{}",
    "event_time": 1_780_000_000_000,
    "ingested_at": 1_780_000_000_000,
}
"""An alerts row (alerts are written by otel-datasink alert, not by spans), every column set."""
_SLA_ROW = {
    "subject": "ingest_orders",
    "kind": "deadline",
    "period_start": 1_780_000_000_000,
    "deadline": 1_780_025_200_000,
    "met": False,
    "met_at": 1_780_031_000_000,
    "late_by_minutes": 96,
    "run_id": "0a1b",
    "rule": "deadline 07:00 UTC",
    "evaluated_at": 1_780_032_000_000,
    "event_time": 1_780_032_000_000,
    "ingested_at": 1_780_032_000_000,
}
"""An sla_results row (written by otel-datasink alert, not by spans), every column set."""


def _ddl_columns(statement: str) -> dict[str, str]:
    create = sqlglot.parse_one(statement, read="athena")
    return {
        column.name: column.args["kind"].sql(dialect="hive").lower()
        for column in create.this.expressions
        if isinstance(column, exp.ColumnDef)
    }


def test_each_ddl_column_type_reads_the_parquet_the_writer_produces(local_location):
    n = now_ns()
    span = job_span(
        "job",
        n - MINUTE_NS,
        n,
        records=1,
        dataset="orders",
        updates=[dict(name="orders", record_count=3)],
        checks=[
            dict(
                name="not_null_orders_id",
                passed=False,
                assertion="not_null",
                column="id",
                actual=4,
                expected=0,
                severity="error",
            )
        ],
    )
    write_spans(local_location, [span])
    Writer(Options.resolve(local_location)).write({"alerts": [_ALERT_ROW], "sla_results": [_SLA_ROW]})
    for statement, table in zip(catalog.athena_tables(LOCATION)[: len(TABLES)], TABLES, strict=True):
        (path,) = glob.glob(f"{local_location}/{table}/dt=*/*.parquet")
        assert _ddl_columns(statement) == _athena_reads(path)


def test_each_rollup_ddl_column_type_reads_the_parquet_the_compaction_produces(local_location):
    day_ms = 86_400_000
    old = (time.time_ns() // 1_000_000) - 5 * day_ms
    update = {"dataset": "d", "status": "SUCCESS", "updated_at": old, "event_time": old, "ingested_at": old}
    run = {"job_name": "j", "run_id": "r", "status": "SUCCESS", "start_time": old, "end_time": old + 1000}
    writer = Writer(Options.resolve(local_location))
    writer.write(
        {
            "dataset_status": [update | {"owners": ["team"], "record_count": 3, "watermark": old}],
            "job_runs": [run | {"event_time": old + 1000, "ingested_at": old + 1000, "duration_ms": 1000}],
        }
    )
    assert compact(writer).rollups_written == 2 + 1  # the run's day and the day before it (no run), the update's
    for statement, table in zip(catalog.athena_tables(LOCATION)[len(TABLES) :], ROLLUPS, strict=True):
        paths = glob.glob(f"{local_location}/{table}/dt=*/*.parquet")
        assert _ddl_columns(statement) == _athena_reads(
            max(paths, key=lambda path: pq.ParquetFile(path).metadata.num_rows)
        )


def _athena_reads(path: str) -> dict[str, str]:
    """Column -> the Athena type that reads the Parquet column of the file at ``path``."""
    parquet = pq.ParquetFile(path).schema
    expected = {}
    for i in range(len(parquet)):
        column = parquet.column(i)
        top = column.path.split(".")[0]
        if top == "attributes":  # a map: key and value leaves, both strings
            assert (column.physical_type, str(column.logical_type)) == ("BYTE_ARRAY", "String")
            expected[top] = "map<string, string>"
        elif ".list." in column.path:  # a list (owners, inputs): its element leaf
            expected[top] = f"array<{_ATHENA_READS[(column.physical_type, str(column.logical_type))]}>"
        else:
            expected[top] = _ATHENA_READS[(column.physical_type, str(column.logical_type))]
    return expected


def test_athena_tables_declare_the_structure_columns_and_the_views_expose_them():
    job_runs, dataset_status = (_ddl_columns(statement) for statement in catalog.athena_tables(LOCATION)[:2])
    assert {name: job_runs[name] for name in ("parent_job_name", "parent_run_id", "owners", "inputs")} == {
        "parent_job_name": "string",
        "parent_run_id": "string",
        "owners": "array<string>",
        "inputs": "array<string>",
    }
    assert dataset_status["owners"] == "array<string>"
    latest = sqlglot.parse_one(catalog.athena_views()[catalog.VIEWS.index("job_runs_latest")], read="athena")
    assert {"parent_job_name", "parent_run_id", "owners", "inputs"} <= set(latest.expression.named_selects)


def test_views_of_the_script_carry_the_parameters_and_the_database():
    parameters = catalog.ViewParameters(window_days=45, dataset_window_days=90, hung_floor_minutes=20)
    views = catalog.athena_views(parameters, database="ops")
    assert all(v.startswith("CREATE OR REPLACE VIEW ops.") for v in views)
    assert "ops.job_runs" in views[0] and "INTERVAL '45' DAY" in views[0]
    assert "ops.dataset_status" in views[1] and "INTERVAL '90' DAY" in views[1] and "'45'" not in views[1]
    assert "20 * 60000.0E0" in views[catalog.VIEWS.index("hung_runs")]
    alerts_open = views[catalog.VIEWS.index("alerts_open")]
    assert "ops.alerts" in alerts_open and "INTERVAL '90' DAY" in alerts_open
    checks_latest = views[catalog.VIEWS.index("dataset_checks_latest")]
    assert (
        "ops.dataset_checks" in checks_latest and "INTERVAL '90' DAY" in checks_latest and "'45'" not in checks_latest
    )
    assert "ops.dataset_checks_latest" in views[catalog.VIEWS.index("failing_checks")]
    for view in views:
        sqlglot.parse_one(view, read="athena")
        # The comments of views.sql go above the statements, never into the text Athena stores.
        assert "/*" not in view and "--" not in view
        # Every table a view reads is qualified: Athena resolves names in the database of the query, not the view.
        for table in sqlglot.parse_one(view, read="athena").find_all(exp.Table):
            assert table.db in ("ops", "") and (table.db == "ops" or table.name not in (*TABLES, *catalog.VIEWS))


def test_ddl_command_prints_the_script(capsys):
    assert main(["ddl", "--location", LOCATION, "--database", "ops", "--window-days", "60"]) == 0
    out = capsys.readouterr().out
    assert "CREATE DATABASE IF NOT EXISTS `ops`;" in out
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `ops`.`dataset_status`" in out
    assert "INTERVAL '60' DAY" in out
    assert "INTERVAL '400' DAY" in out  # dataset_window_days' default
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `ops`.`alerts`" in out and "`delivered` boolean" in out
    assert len(sqlglot.parse(out, read="athena")) == 1 + len(STORED_TABLES) + len(catalog.VIEWS)


@pytest.mark.parametrize(
    "argv",
    [
        ["ddl", "--location", "/tmp/datasink"],
        ["ddl", "--location", LOCATION, "--database", "Bad-Name"],
        ["ddl", "--location", LOCATION, "--database", "ops\n"],
    ],
)
def test_ddl_command_refuses_what_athena_cannot_use(argv, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("otel-datasink ddl:")


def test_ddl_command_refuses_inconsistent_windows(capsys):
    assert main(["ddl", "--location", LOCATION, "--window-days", "7"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("otel-datasink ddl: window_days")


@pytest.mark.parametrize(
    "location",
    [
        "s3://b/x'; DROP TABLE y; --",
        "s3://acme-monitoring/x'; DROP TABLE y; --",
        "s3://acme-monitoring/data\nsink",
        "s3://acme-monitoring/data\rsink",
        "s3://acme-monitoring/data\x00sink",
        "s3://acme-monitoring/data\\sink",
        's3://acme-monitoring/data"sink',
        "s3://acme-monitoring/data sink",
        "s3://acme-monitoring/data/*",
        "s3://acme-monitoring/a/../b",
        "s3://acme-monitoring/a//b",
        "s3://acme-monitoring\n/datasink",
        "s3://Acme-Monitoring/datasink",
        "s3://acme..monitoring/datasink",
        "s3://192.168.0.1/datasink",
        "s3://xn--acme/datasink",
        "s3://acme-s3alias/datasink",
        "s3://ab/datasink",
        "s3://-acme/datasink",
    ],
)
def test_ddl_command_refuses_a_location_that_is_no_safe_s3_prefix_and_prints_no_sql(location, capsys):
    assert main(["ddl", "--location", location]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("otel-datasink ddl: ") and "s3://bucket/prefix" in line


def _locations(script: str) -> dict[str, tuple[str, str]]:
    """Per table of the script: its LOCATION literal and its storage.location.template, as Athena reads them."""
    found = {}
    for create in sqlglot.parse(script, read="athena"):
        if isinstance(create, exp.Create) and create.args["kind"] == "TABLE":
            properties = {p.name: p.text("value") for p in create.find_all(exp.Property) if p.name}
            location = create.find(exp.LocationProperty).this
            assert location.is_string
            found[create.this.this.name] = (location.this, properties["storage.location.template"])
    return found


def test_a_location_with_unusual_but_safe_characters_round_trips(capsys):
    assert main(["ddl", "--location", "s3a://my.bucket-1/Data!set/(v2)/a_b.c-d/"]) == 0
    root = "s3://my.bucket-1/Data!set/(v2)/a_b.c-d"
    assert _locations(capsys.readouterr().out) == {
        table: (f"{root}/{table}/", f"{root}/{table}/dt=${{dt}}") for table in STORED_TABLES
    }


def test_the_location_is_quoted_in_its_literals_even_past_the_check(monkeypatch):
    # Defence in depth: were athena_location to let a quote, a backslash or a newline through, each stays
    # inside its string literal and the script still holds one statement per table.
    root = "s3://acme/x'; DROP TABLE y; --\\\nz"
    monkeypatch.setattr(catalog, "athena_location", lambda location: location)
    script = ";\n".join(catalog.athena_tables(root))
    assert len(sqlglot.parse(script, read="athena")) == len(STORED_TABLES)
    assert _locations(script) == {table: (f"{root}/{table}/", f"{root}/{table}/dt=${{dt}}") for table in STORED_TABLES}
