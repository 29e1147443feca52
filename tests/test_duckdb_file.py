"""``otel-datasink ddl --duckdb FILE``: a DuckDB database file opened as BI tools open it (SQLAlchemy with
duckdb_engine, in a fresh engine), whose views read the location when queried: runs and tables written after the
file are seen, from any working folder; it holds no credential; it never overwrites a file unasked."""

from __future__ import annotations

import os

import duckdb
import pytest
from job_spans import MINUTE_NS, job_span, now_ns, write_spans

from otel_datasink import catalog
from otel_datasink.cli import main

sqlalchemy = pytest.importorskip("sqlalchemy")
pytest.importorskip("duckdb_engine", reason="the test extra's duckdb_engine (SQLAlchemy's DuckDB dialect)")


def _run(job: str, checks: list[dict] | None = None):
    end = now_ns()
    return job_span(job, end - MINUTE_NS, end, dataset=f"{job}_out", checks=checks)


def test_a_bi_tool_opens_the_file_and_sees_runs_and_tables_written_after_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_spans("datasink", [_run("extract")])  # a relative location: the file must not depend on the cwd
    assert main(["ddl", "--location", "datasink", "--duckdb", "monitoring.duckdb"]) == 0
    # After the file: a run of a new job, and the first rows of a table that had no file (dataset_checks).
    write_spans("datasink", [_run("load", checks=[{"name": "not_null", "passed": False, "dataset": "load_out"}])])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    engine = sqlalchemy.create_engine(f"duckdb:///{tmp_path / 'monitoring.duckdb'}", connect_args={"read_only": True})
    try:
        assert set(catalog.VIEWS) <= set(sqlalchemy.inspect(engine).get_view_names())
        with engine.connect() as connection:
            jobs = connection.execute(sqlalchemy.text("SELECT job_name, status FROM job_runs_latest")).fetchall()
            checks = connection.execute(sqlalchemy.text("SELECT dataset, check_name FROM failing_checks")).fetchall()
    finally:
        engine.dispose()
    assert sorted(jobs) == [("extract", "SUCCESS"), ("load", "SUCCESS")]
    assert checks == [("load_out", "not_null")]


def test_the_views_of_the_file_read_the_clock_when_queried(tmp_path):
    write_spans(str(tmp_path / "datasink"), [_run("extract")])
    assert main(["ddl", "--location", str(tmp_path / "datasink"), "--duckdb", str(tmp_path / "m.duckdb")]) == 0
    with duckdb.connect(str(tmp_path / "m.duckdb"), read_only=True) as con:
        (text,) = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'job_runs_latest'").fetchone()
    assert "current_date" in text.lower()  # not the day the file was written


def test_the_file_of_an_s3_location_reads_its_urls_and_holds_no_credential(s3_location, moto_server, tmp_path, capsys):
    write_spans(s3_location, [_run("extract")], s3_endpoint_url=moto_server.endpoint_url)
    path = tmp_path / "m.duckdb"
    args = ["ddl", "--location", s3_location, "--s3-endpoint-url", moto_server.endpoint_url, "--duckdb", str(path)]
    assert main(args) == 0
    assert "httpfs" in capsys.readouterr().out  # what the reader needs, said where the file is written
    assert os.environ["AWS_SECRET_ACCESS_KEY"].encode() not in path.read_bytes()
    # A reader brings its own credentials (here s3fs, as httpfs would with a secret): the views name the URLs.
    import s3fs

    with duckdb.connect(str(path), read_only=True) as con:
        con.register_filesystem(s3fs.S3FileSystem(endpoint_url=moto_server.endpoint_url))
        assert con.execute("SELECT job_name FROM job_runs_latest").fetchall() == [("extract",)]


def _one_line_failure(capsys, *causes: str) -> None:
    out, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert out == "" and line.startswith("otel-datasink ddl: ") and all(cause in line for cause in causes), line


def test_an_existing_file_is_kept_unless_force(tmp_path, capsys):
    location, path = str(tmp_path / "datasink"), tmp_path / "mine.duckdb"
    write_spans(location, [_run("extract")])
    path.write_bytes(b"somebody's database")
    assert main(["ddl", "--location", location, "--duckdb", str(path)]) == 2
    _one_line_failure(capsys, "exists", "--force")
    assert path.read_bytes() == b"somebody's database"
    assert main(["ddl", "--location", location, "--duckdb", str(path), "--force"]) == 0
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM job_runs_latest").fetchone() == (1,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datasink", "mine.duckdb"]  # no temporary file left


@pytest.mark.parametrize(
    ("file", "cause"), [("missing/m.duckdb", "does not exist"), (".", "is a folder"), ("m.duckdb", "no job_runs")]
)
def test_a_bad_file_or_an_empty_location_fails_in_one_line(tmp_path, capsys, file, cause):
    location = tmp_path / "datasink"
    location.mkdir()
    if cause != "no job_runs":
        write_spans(str(location), [_run("extract")])
    assert main(["ddl", "--location", str(location), "--duckdb", str(tmp_path / file)]) == 2
    _one_line_failure(capsys, cause)
    assert not (tmp_path / "m.duckdb").exists()
