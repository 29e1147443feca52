"""Compaction: fewer files, the same answers from every view, and a crash half-way mended by the next run."""

from __future__ import annotations

import json
import os
import shutil
import time

import fsspec
import pytest

import otel_datasink.compact as compact_module
from otel_datasink import local
from otel_datasink.catalog import VIEWS
from otel_datasink.cli import main
from otel_datasink.compact import MANIFEST_PREFIX, compact
from otel_datasink.config import Options
from otel_datasink.mapping import STATUS_CODE_ERROR, SpanRecord, map_records
from otel_datasink.profiles import DEFAULT_PROFILE
from otel_datasink.schema import TABLES
from otel_datasink.writer import Writer

DAY_NS = 86_400 * 10**9


class Crash(Exception):
    """Stands for the process dying at a given step."""


def write_history(writer: Writer, runs: int = 24) -> None:
    """Jobs over the last three days, each run flushed on its own (one small file per table per flush).

    Successes, failures, a run still STARTED, a backfill, dataset updates, and some runs written twice
    (a retried flush), so that every view has rows.
    """
    now = time.time_ns()
    for i in range(runs):
        start = now - (i % 3) * DAY_NS - 3_600 * 10**9 - i * 10**9
        failed = i % 5 == 4
        attributes = {
            "job.name": f"job_{i % 3}",
            "job.records_processed": 1000 + (i * 37) % 11,
            "dataset.name": f"dataset_{i % 3}",
        }
        if i == 7:
            attributes.update({"job.run.type": "backfill", "job.run.logical_date": "2026-01-01T00:00:00Z"})
        record = SpanRecord(
            name=f"job_{i % 3}",
            trace_id=0xABC000 + i,
            span_id=0x100 + i,
            parent_span_id=None,
            start_time_ns=start,
            end_time_ns=start + (20 + i) * 10**9,
            status_code=STATUS_CODE_ERROR if failed else 0,
            status_message="boom" if failed else "",
            attributes=attributes,
            events=[("dataset.update", start + 10**9, {"dataset.name": f"dataset_{i % 3}", "dataset.record_count": i})],
        )
        rows = map_records([record], DEFAULT_PROFILE, ingested_at_ms=start // 10**6 + 60_000)
        writer.write(rows)
        if i % 4 == 0:
            writer.write(rows)  # a retried flush: the same rows twice in storage
    hung = SpanRecord("job_0", 0xDEAD, 0xBEEF, None, now - 5 * 3_600 * 10**9, None, 0, "", {"job.name": "job_0"})
    writer.write(map_records([hung], DEFAULT_PROFILE, ingested_at_ms=now // 10**6))


def view_answers(location: str, **options) -> dict[str, list[tuple]]:
    """Every view's rows, sorted, through otel_datasink.local.connect."""
    con = local.connect(location, **options)
    answers = {}
    for view in VIEWS:
        relation = con.sql(f"SELECT * FROM {view}")
        answers[view] = sorted(relation.fetchall(), key=repr)
    con.close()
    return answers


def table_rows(writer: Writer) -> dict[str, list[str]]:
    """Each table's rows as a sorted multiset, read back with pyarrow through the writer's filesystem."""
    import pyarrow.dataset as ds

    out = {}
    writer.fs.invalidate_cache()
    for table in TABLES:
        if not writer.fs.exists(writer.path(table)):  # alerts: written by otel-datasink alert, not by spans
            continue
        data = ds.dataset(writer.path(table), filesystem=writer.fs, format="parquet", partitioning="hive")
        out[table] = sorted(json.dumps(row, default=str, sort_keys=True) for row in data.to_table().to_pylist())
    return out


def data_files(writer: Writer) -> list[str]:
    writer.fs.invalidate_cache()
    return sorted(p for table in TABLES for p in writer.fs.glob(f"{writer.path(table)}/dt=*/*.parquet"))


def assert_views_equal(snapshot: str, writer: Writer, tmp_path, *, direct: bool = False) -> None:
    """Every view over the location's files answers as over the snapshot taken before compaction.

    The views read nothing but the files; unless ``direct``, they are asked of a local mirror of the store's
    files as they are now (DuckDB reads each S3 file through fsspec, slowly when there are many). They read
    the clock too (freshness, hung runs): both are asked side by side, and once more should a minute
    boundary fall in between.
    """
    if direct:
        location, options = writer.options.location, {"s3_endpoint_url": writer.options.s3_endpoint_url}
    else:
        location, options = _snapshot(writer, tmp_path), {}
    for attempt in range(2):
        before, after = view_answers(snapshot), view_answers(location, **options)
        if before == after or attempt == 1:
            break
    assert sum(len(rows) for rows in before.values()) > 0
    for view in VIEWS:
        assert after[view] == before[view], view


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """(location, options) on local disk or on the moto S3 server."""
    if request.param == "local":
        return str(tmp_path / "datasink"), {}
    moto = request.getfixturevalue("moto_server")
    return request.getfixturevalue("s3_location"), {"s3_endpoint_url": moto.endpoint_url}


def _snapshot(writer: Writer, tmp_path) -> str:
    """A local copy of the location's files as they are now."""
    writer.fs.invalidate_cache()
    target = tmp_path / f"snapshot-{time.time_ns()}"
    if os.path.isdir(writer.root):
        shutil.copytree(writer.root, target)
    else:
        writer.fs.get(writer.root, str(target), recursive=True)
    return str(target)


def test_compaction_drops_file_count_and_every_view_answers_the_same(store, tmp_path):
    location, options = store
    writer = Writer(Options.resolve(location, **options))
    write_history(writer)
    files_before = data_files(writer)
    rows_before = table_rows(writer)
    snapshot = _snapshot(writer, tmp_path)

    result = compact(writer)

    files_after = data_files(writer)
    assert len(files_before) > 30
    partitions = {path.rsplit("/", 1)[0] for path in files_before}
    assert len(files_after) == result.files_after == len(partitions)  # one file per table per day
    assert table_rows(writer) == rows_before
    # Asked of the store itself: a handful of files now.
    assert_views_equal(snapshot, writer, tmp_path, direct=True)


def test_compaction_interrupted_after_the_output_landed_shows_no_duplicates_and_rerun_finishes(store, tmp_path):
    location, options = store
    writer = Writer(Options.resolve(location, **options))
    write_history(writer)
    rows_before = table_rows(writer)
    snapshot = _snapshot(writer, tmp_path)

    def die(step: str) -> None:
        if step == "output_written":
            raise Crash(step)

    with pytest.raises(Crash):
        compact(writer, hook=die)

    # The output landed beside its inputs: rows are twice in storage, the views collapse them.
    assert sum(map(len, table_rows(writer).values())) > sum(map(len, rows_before.values()))
    manifests = [p for p in writer.fs.find(writer.root) if os.path.basename(p).startswith(MANIFEST_PREFIX)]
    assert len(manifests) == 1
    assert_views_equal(snapshot, writer, tmp_path)

    result = compact(writer)

    assert result.resumed == 1
    assert table_rows(writer) == rows_before  # neither loss nor duplicate
    assert not [p for p in writer.fs.find(writer.root) if os.path.basename(p).startswith(MANIFEST_PREFIX)]
    assert_views_equal(snapshot, writer, tmp_path)


def test_compaction_interrupted_before_the_output_landed_loses_nothing(local_location):
    writer = Writer(Options.resolve(local_location))
    write_history(writer, runs=6)
    rows_before = table_rows(writer)
    original_put = writer.put

    def put_manifest_only(path, data, **kwargs):
        if path.endswith(".parquet"):
            raise Crash(path)
        original_put(path, data, **kwargs)

    writer.put = put_manifest_only
    with pytest.raises(Crash):
        compact(writer)
    writer.put = original_put
    assert table_rows(writer) == rows_before

    result = compact(writer)
    assert result.resumed == 1
    assert table_rows(writer) == rows_before
    assert len(data_files(writer)) == result.files_after < result.files_before


def test_compaction_never_removes_a_file_written_while_it_runs(local_location):
    writer = Writer(Options.resolve(local_location))
    write_history(writer, runs=6)
    late: list[str] = []

    def write_meanwhile(step: str) -> None:
        if step == "output_written" and not late:
            record = SpanRecord(
                "late", 0xFEED, 0xF00D, None, time.time_ns(), time.time_ns(), 0, "", {"job.name": "late"}
            )
            late.extend(writer.write(map_records([record], DEFAULT_PROFILE)))

    compact(writer, hook=write_meanwhile)
    assert late and all(writer.fs.exists(path) for path in late)
    assert "late" in {json.loads(row)["job_name"] for row in table_rows(writer)["job_runs"]}


def test_second_compaction_changes_nothing(local_location):
    writer = Writer(Options.resolve(local_location))
    write_history(writer, runs=6)
    compact(writer)
    files = data_files(writer)
    result = compact(writer)
    assert (result.files_written, data_files(writer)) == (0, files)


def test_target_size_bounds_the_files_written(local_location):
    writer = Writer(Options.resolve(local_location))
    write_history(writer, runs=24)
    small = min(os.path.getsize(p) for p in data_files(writer))
    compact(writer, target_size=3 * small + 1)
    sizes = [os.path.getsize(p) for p in data_files(writer)]
    assert len(sizes) > 7  # more than one file per partition: each bin held at most three inputs


def test_cli_dry_run_prints_the_plan_and_changes_nothing(local_location, capsys):
    writer = Writer(Options.resolve(local_location))
    write_history(writer, runs=6)
    files = data_files(writer)
    assert main(["compact", "--location", local_location, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "file(s) to write" in out and "job_runs/dt=" in out
    assert data_files(writer) == files


def test_cli_compacts_one_table_older_than_a_day_only(local_location, capsys):
    writer = Writer(Options.resolve(local_location))
    write_history(writer, runs=12)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    before = {p: p.split("/dt=")[1][:10] for p in data_files(writer)}
    assert main(["compact", "--location", local_location, "--table", "job_runs", "--older-than", "1"]) == 0
    after = data_files(writer)
    untouched = [p for p, day in before.items() if "/dataset_status/" in p or day >= today]
    assert all(p in after for p in untouched)
    assert len(after) < len(before)
    assert "file(s)" in capsys.readouterr().out


def test_manifest_is_hidden_from_readers(local_location):
    writer = Writer(Options.resolve(local_location))
    write_history(writer, runs=3)
    folder = writer.path("job_runs", time.strftime("%Y-%m-%d", time.gmtime()))
    with fsspec.open(f"{folder}/{MANIFEST_PREFIX}x.json", "w") as handle:
        handle.write(json.dumps({"inputs": [], "output": "missing.parquet"}))
    assert table_rows(writer)["job_runs"]
    assert view_answers(local_location)["job_runs_latest"]


def test_cli_ctrl_c_says_what_was_done_and_exits_130_and_the_next_run_finishes(local_location, capsys, monkeypatch):
    writer = Writer(Options.resolve(local_location))
    write_history(writer, runs=12)
    rows = table_rows(writer)
    done = []

    def interrupted_after_one(*args, **kwargs):
        if done:
            raise KeyboardInterrupt  # Ctrl-C while the second bin is being rewritten
        done.append(real(*args, **kwargs))
        return done[-1]

    real = compact_module.compact_bin
    monkeypatch.setattr(compact_module, "compact_bin", interrupted_after_one)
    monkeypatch.setattr("otel_datasink.cli.signal.signal", lambda *args: None)  # keep pytest's own Ctrl-C
    assert main(["compact", "--location", local_location, "--no-progress"]) == 130
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("otel-datasink compact: interrupted; wrote 1 file(s) (") and "KiB" in line
    assert line.endswith("the next compaction finishes the one in flight")
    monkeypatch.setattr(compact_module, "compact_bin", real)
    assert main(["compact", "--location", local_location, "--no-progress"]) == 0
    assert table_rows(writer) == rows  # the same rows, each once
