"""``local.connect``: the tables and views on a local folder, on S3 (moto server) and on an empty location."""

from __future__ import annotations

import re

import duckdb
import pytest
from job_spans import DAY_NS, MINUTE_NS, job_span, now_ns, write_spans

from otel_datasink import catalog, local
from otel_datasink.schema import STORED_TABLES, TABLES


def _one_run(location: str, job: str = "ingest_orders", **options) -> None:
    n = now_ns()
    span = job_span(job, n - 10 * MINUTE_NS, n - MINUTE_NS, records=42, dataset="orders")
    write_spans(location, [span], **options)


def _names(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def _extension_loaded(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    query = "SELECT loaded FROM duckdb_extensions() WHERE extension_name = ?"
    return bool(con.execute(query, [name]).fetchone()[0])


def test_connect_on_a_local_folder_gives_tables_views_and_utc(local_location):
    _one_run(local_location)
    con = local.connect(local_location)
    assert _names(con) == set(STORED_TABLES) | set(catalog.VIEWS)
    assert con.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)
    run = con.execute("SELECT job_name, status, records_processed FROM job_runs_latest").fetchall()
    assert run == [("ingest_orders", "SUCCESS", 42)]
    (dt,) = con.execute("SELECT dt FROM job_runs").fetchone()
    assert dt == con.execute("SELECT strftime(event_time, '%Y-%m-%d') FROM job_runs").fetchone()[0]
    assert con.execute("SELECT dataset, is_stale FROM dataset_status_latest").fetchall() == [("orders", False)]


def test_table_columns_follow_the_schema_with_dt_as_a_string(local_location):
    _one_run(local_location)
    con = local.connect(local_location)
    for table, schema in TABLES.items():
        columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
        assert columns == [*schema.names, "dt"]
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE job_runs)").fetchall())
    assert (types["dt"], types["start_time"], types["attributes"]) == (
        "VARCHAR",
        "TIMESTAMP WITH TIME ZONE",
        "MAP(VARCHAR, VARCHAR)",
    )


def test_connect_on_an_empty_location_has_typed_empty_tables_and_views(tmp_path, local_location):
    empty = local.connect(tmp_path / "nothing")
    for name in (*TABLES, *catalog.VIEWS):
        assert empty.execute(f"SELECT count(*) FROM {name}").fetchone() == (0,)
    _one_run(local_location)
    full = local.connect(local_location)
    for table in TABLES:
        assert empty.execute(f"DESCRIBE {table}").fetchall() == full.execute(f"DESCRIBE {table}").fetchall()


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda path: None, "does not exist"),
        (lambda path: path.write_text("x"), "is a file, not a folder of tables"),
        (lambda path: path.mkdir(), "holds no job_runs or dataset_status or dataset_checks files"),
        (lambda path: (path / "job_runs" / "dt=2026-01-01").mkdir(parents=True), "holds no job_runs or dataset_status"),
    ],
    ids=["missing", "file", "empty_folder", "empty_partition"],
)
def test_must_exist_says_why_a_local_location_has_no_table(tmp_path, make, cause):
    location = tmp_path / "datasink"
    make(location)
    with pytest.raises(local.NoTablesError, match=f"^{re.escape(str(location))} {cause}"):
        local.connect(location, must_exist=True)
    # Without it (the default: tests, the pytest plugin) the same location is empty tables.
    assert local.connect(location).execute("SELECT count(*) FROM job_runs_latest").fetchone() == (0,)


def test_must_exist_opens_a_location_with_files(local_location):
    _one_run(local_location)
    con = local.connect(local_location, must_exist=True)
    assert con.execute("SELECT job_name FROM job_runs_latest").fetchall() == [("ingest_orders",)]


def test_must_exist_on_s3_tells_an_empty_prefix_from_a_missing_bucket(s3_location, moto_server):
    endpoint = moto_server.endpoint_url
    with pytest.raises(local.NoTablesError, match=f"^nothing is stored under {re.escape(s3_location)}$"):
        local.connect(s3_location, must_exist=True, s3_endpoint_url=endpoint)
    missing = "s3://no-such-bucket-for-datasink/datasink"
    with pytest.raises(
        FileNotFoundError, match=f"^bucket no-such-bucket-for-datasink of {missing} does not exist$"
    ) as raised:
        local.connect(missing, must_exist=True, s3_endpoint_url=endpoint)
    assert not isinstance(raised.value, local.NoTablesError)  # --allow-empty does not excuse a missing bucket
    _one_run(s3_location, s3_endpoint_url=endpoint)
    con = local.connect(s3_location, must_exist=True, s3_endpoint_url=endpoint)
    assert con.execute("SELECT job_name FROM job_runs_latest").fetchall() == [("ingest_orders",)]


def test_a_connection_sees_files_written_after_it_was_made(local_location):
    _one_run(local_location)
    con = local.connect(local_location)
    _one_run(local_location, job="second_job")
    assert con.execute("SELECT count(*) FROM job_runs_latest").fetchone() == (2,)


def test_a_connection_caches_parquet_footers_and_reads_a_compacted_store_the_same(local_location):
    from otel_datasink.compact import compact
    from otel_datasink.config import Options
    from otel_datasink.writer import Writer

    _one_run(local_location)
    _one_run(local_location, job="second_job")
    con = local.connect(local_location)
    # Each view binds job_runs' footers again: cached, a year of daily files costs a command ~1 s less.
    assert con.execute("SELECT current_setting('parquet_metadata_cache')").fetchone() == (True,)
    query = "SELECT job_name, status, records_processed FROM job_runs_latest ORDER BY job_name"
    before = con.execute(query).fetchall()
    compact(Writer(Options.resolve(local_location)))  # the files read before are replaced by one
    assert before == [("ingest_orders", "SUCCESS", 42), ("second_job", "SUCCESS", 42)]
    assert con.execute(query).fetchall() == before


def test_connect_on_s3_reads_through_s3fs_without_extensions(s3_location, moto_server):
    endpoint = moto_server.endpoint_url
    _one_run(s3_location, s3_endpoint_url=endpoint)
    con = local.connect(s3_location, s3_endpoint_url=endpoint)
    assert con.execute("SELECT job_name, status FROM job_runs_latest").fetchall() == [("ingest_orders", "SUCCESS")]
    assert con.execute("SELECT dataset FROM dataset_status_latest").fetchall() == [("orders",)]
    assert not _extension_loaded(con, "httpfs")
    # A long-lived connection sees later files, in a known partition and in a new one.
    _one_run(s3_location, job="second_job", s3_endpoint_url=endpoint)
    n = now_ns()
    write_spans(
        s3_location, [job_span("old_job", n - 2 * DAY_NS, n - 2 * DAY_NS + MINUTE_NS)], s3_endpoint_url=endpoint
    )
    assert con.execute("SELECT count(*) FROM job_runs_latest").fetchone() == (3,)


def test_connect_on_an_empty_s3_location_returns_no_rows(s3_location, moto_server):
    con = local.connect(s3_location, s3_endpoint_url=moto_server.endpoint_url)
    for view in catalog.VIEWS:
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)


def test_connect_takes_the_location_from_the_environment(local_location, monkeypatch):
    _one_run(local_location)
    monkeypatch.setenv("OTEL_EXPORTER_DATASINK_LOCATION", local_location)
    assert local.connect().execute("SELECT count(*) FROM job_runs").fetchone() == (1,)


def test_view_parameters_are_checked():
    with pytest.raises(ValueError, match="window_days"):
        catalog.ViewParameters(window_days=10)
    with pytest.raises(ValueError, match="positive"):
        catalog.ViewParameters(anomaly_z=0)
    with pytest.raises(ValueError, match="integer"):
        catalog.ViewParameters(window_days=30.5)
