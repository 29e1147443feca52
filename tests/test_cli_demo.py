"""``otel-datasink demo``: the README's first command runs an instrumented example and prints both tables."""

from __future__ import annotations

import subprocess
from pathlib import Path

from command_line import command, environment


def demo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        command("demo", *args), cwd=cwd, capture_output=True, text=True, timeout=120, env=environment()
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def test_demo_writes_both_tables_and_prints_them(tmp_path, read_tables):
    location = str(tmp_path / "tables")
    out = demo("--location", location, cwd=tmp_path).stdout

    assert "job_runs" in out and "dataset_status" in out
    for value in ("ingest_orders", "stream_clicks", "FAILED", "SUCCESS", "STARTED", "ConnectionError", "clicks"):
        assert value in out
    tables = read_tables(location)
    runs = tables.rows("job_runs")
    assert {row["status"] for row in runs} == {"STARTED", "SUCCESS", "FAILED"}
    assert {row["job_type"] for row in runs} == {"batch", "streaming"}
    assert len({row["dataset"] for row in tables.rows("dataset_status")}) >= 2
    assert not (tmp_path / "datasink").exists()


def test_demo_writes_to_datasink_in_the_working_folder_by_default(tmp_path, read_tables):
    demo(cwd=tmp_path)
    assert read_tables(str(tmp_path / "datasink")).rows("job_runs")
