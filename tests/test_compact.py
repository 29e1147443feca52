"""Compaction: fewer files, the same answers from every view, and a crash half-way mended by the next run."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import fsspec
import pytest
from command_line import EXIT_FAILURE, command, environment

import otel_datasink.compact as compact_module
from otel_datasink import local
from otel_datasink.catalog import VIEWS
from otel_datasink.cli import main
from otel_datasink.compact import MANIFEST_PREFIX, TEMPORARY_MAX_AGE, compact, compact_bin, partitions, plan
from otel_datasink.config import Options
from otel_datasink.lease import Held
from otel_datasink.location import file_name
from otel_datasink.mapping import STATUS_CODE_ERROR, SpanRecord, map_records
from otel_datasink.profiles import DEFAULT_PROFILE
from otel_datasink.schema import TABLES
from otel_datasink.writer import Writer

DAY_NS = 86_400 * 10**9
EXIT_BUSY = 75


class Crash(Exception):
    """Stands for the process dying at a given step."""


def write_history(writer: Writer, runs: int = 24) -> None:
    """Jobs over the last three days, each run flushed on its own (one small file per table per flush).

    Successes, failures, a run still STARTED, a backfill, dataset updates and checks, and some runs written twice
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
            events=[
                ("dataset.update", start + 10**9, {"dataset.name": f"dataset_{i % 3}", "dataset.record_count": i}),
                (
                    "dataset.check",
                    start + 10**9,
                    {"dataset.name": f"dataset_{i % 3}", "check.name": "rows", "check.passed": i % 4 != 1},
                ),
            ],
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


def manifests(writer: Writer) -> list[str]:
    """The compaction manifests in storage now."""
    writer.fs.invalidate_cache()
    return [p for p in writer.fs.find(writer.root) if os.path.basename(p).startswith(MANIFEST_PREFIX)]


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
    assert len(manifests(writer)) == 1
    assert_views_equal(snapshot, writer, tmp_path)

    result = compact(writer)

    assert result.resumed == 1
    assert table_rows(writer) == rows_before  # neither loss nor duplicate
    assert not manifests(writer)
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


# --- two compactions at once, a killed one, a store that fails under one -----------------------------------


def start_compact(location: str, options: dict, *args: str) -> subprocess.Popen:
    """A real ``otel-datasink compact`` process on the location (the moto endpoint of ``options``, if any)."""
    endpoint = ["--s3-endpoint-url", options["s3_endpoint_url"]] if options else []
    return subprocess.Popen(
        command("compact", "--location", location, "--no-progress", *endpoint, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )


def finished(process: subprocess.Popen) -> tuple[int, str, str]:
    """The process's exit status, stdout and stderr, once it is done."""
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def small_bins(writer: Writer) -> str:
    """A ``--target-size`` that makes a bin of every two files: many bins, so a compaction runs a while."""
    writer.fs.invalidate_cache()
    return str(2 * max(int(writer.fs.size(p)) for p in data_files(writer)) + 1)


@contextlib.contextmanager
def stopped_mid_compaction(location: str, options: dict, writer: Writer, *args: str) -> Iterator[subprocess.Popen]:
    """A compact process frozen (SIGSTOP) half-way, as a loaded machine or a long GC pause leaves one: it holds the
    lock and has a bin in flight. It goes on (SIGCONT) when the block ends."""
    process = start_compact(location, options, *args)
    try:
        deadline = time.monotonic() + 120
        while not manifests(writer) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, "the compaction ended before it was seen half-way"
        os.kill(process.pid, signal.SIGSTOP)
        try:
            yield process
        finally:
            os.kill(process.pid, signal.SIGCONT)
    except BaseException:
        process.kill()
        process.communicate()
        raise


def history_runs_for_a_busy_compaction(options: dict) -> int:
    """Runs of :func:`write_history` whose files, in bins of two (:func:`small_bins`), keep a compaction busy long
    enough to be caught half-way or overlapped: many on local disk, where a bin takes milliseconds; a third as many
    on S3, where each bin's requests (lease, manifest, read, put, removals) take ~100 ms against moto."""
    return 16 if options else 48


def assert_each_row_once(writer: Writer, rows_before: dict[str, list[str]], read_tables) -> None:
    """Every row of before is in storage once, none more, read back with pyarrow and with DuckDB."""
    assert table_rows(writer) == rows_before
    reader = read_tables(writer.options.location, writer.options.s3_endpoint_url)
    for table in ("job_runs", "dataset_status"):
        assert len(reader.rows(table)) == len(rows_before[table]), table


def assert_busy(status: int, err: str) -> None:
    """A compaction refused because another holds the lock: exit status 75 and one line that says so."""
    assert status == EXIT_BUSY, err
    (line,) = err.splitlines()
    assert line.startswith("otel-datasink compact: another compaction holds "), line
    assert "_compaction.lock" in line and line.endswith("; try again once it is done"), line


def test_a_compaction_started_while_another_runs_exits_75_and_every_row_stays_once(store, read_tables):
    location, options = store
    writer = Writer(Options.resolve(location, **options))
    write_history(writer, runs=history_runs_for_a_busy_compaction(options))
    rows_before = table_rows(writer)

    with stopped_mid_compaction(location, options, writer, "--target-size", small_bins(writer)) as first:
        status, _, err = finished(start_compact(location, options))
        assert_busy(status, err)

    status, _, err = finished(first)
    assert (status, err) == (0, ""), err
    assert_each_row_once(writer, rows_before, read_tables)
    assert not manifests(writer)


def test_compactions_started_at_once_store_every_row_once(store, read_tables):
    location, options = store
    writer = Writer(Options.resolve(location, **options))
    write_history(writer, runs=history_runs_for_a_busy_compaction(options))
    rows_before = table_rows(writer)
    target = small_bins(writer)

    processes = [start_compact(location, options, "--target-size", target) for _ in range(3)]
    outcomes = [finished(process) for process in processes]

    assert [status for status, _, _ in outcomes].count(0) >= 1, outcomes
    for status, _, err in outcomes:
        if status != 0:
            assert_busy(status, err)
    assert_each_row_once(writer, rows_before, read_tables)
    assert not manifests(writer)


def test_the_same_files_compacted_twice_at_once_are_stored_once(local_location):
    # Should two compactions of one bin overlap despite the lock (one went on after its S3 lease was taken over),
    # both write the one object named after the inputs: each row stays once.
    writer = Writer(Options.resolve(local_location))
    write_history(writer, runs=6)
    rows = table_rows(writer)
    item = plan(writer, partitions(writer, TABLES), compact_module.DEFAULT_TARGET_SIZE).bins[0]

    def the_other_one(step: str) -> None:
        if step == "output_written":  # its inputs are still there: the other compaction rewrites them too
            compact_bin(writer, item, held=Held("another lease", "compaction"), deadline_s=30)

    compact_bin(writer, item, held=Held("a lease", "compaction"), deadline_s=30, hook=the_other_one)

    assert table_rows(writer) == rows and not manifests(writer)


def write_large_files(writer: Writer, files: int, size: int) -> None:
    """``files`` files of one job_runs row each, whose error message is ``size`` random characters: a compaction
    of them writes one large file (a temporary file for a while) in one partition."""
    for i in range(files):
        now = time.time_ns()
        record = SpanRecord("big", 0xB16000 + i, 0x100 + i, None, now, now, STATUS_CODE_ERROR, "", {"job.name": "big"})
        rows = map_records([record], DEFAULT_PROFILE)
        for row in rows["job_runs"]:
            row["error_message"] = os.urandom(size // 2).hex()
        writer.write({"job_runs": rows["job_runs"]})


def temporaries(writer: Writer) -> list[str]:
    """The hidden temporary files in the location's partitions."""
    return sorted(p for table in TABLES for p in writer.fs.glob(f"{writer.path(table)}/dt=*/.*.tmp"))


def kill_while_writing(location: str) -> str | None:
    """Starts a compaction and SIGKILLs it as soon as one of its temporary files appears (its output's, nearly
    always: the one written for long); the temporary left behind, or None when the kill came too late (the
    compaction had renamed it, or was done)."""
    process = start_compact(location, {})
    try:
        while process.poll() is None:
            for path in glob.glob(f"{location}/job_runs/dt=*/.*.tmp"):
                process.kill()
                process.communicate()
                return path if os.path.exists(path) else None
            time.sleep(0.001)
        return None
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_the_next_compaction_removes_the_temporary_file_of_a_killed_one(local_location, capsys):
    writer = Writer(Options.resolve(local_location))
    leftover = None
    for _ in range(10):  # each try adds files; the kill lands while the output is written nearly every time
        write_large_files(writer, files=24, size=1 << 20)
        leftover = kill_while_writing(local_location)
        if leftover is not None:
            break
    assert leftover is not None, "no compaction was caught writing its output"
    # Each row once: a try killed after its output landed left rows twice, which the next run mends.
    rows_before = {table: sorted(set(rows)) for table, rows in table_rows(writer).items()}

    assert main(["compact", "--location", local_location, "--no-progress"]) == 0

    assert "removed 1 leftover temporary file(s)" in capsys.readouterr().out
    assert not os.path.exists(leftover) and temporaries(writer) == []
    assert table_rows(writer) == rows_before  # the killed compaction lost nothing, and stored nothing twice


def test_a_temporary_file_left_for_an_hour_is_removed_and_a_fresh_one_kept(local_location):
    writer = Writer(Options.resolve(local_location))
    write_history(writer, runs=3)
    folder = os.path.dirname(data_files(writer)[0])
    killed, writing = (os.path.join(folder, f".{file_name()}.{uuid.uuid4().hex[:12]}.tmp") for _ in range(2))
    for path in (killed, writing):
        with open(path, "wb") as out:
            out.write(b"PAR1 half a file")
    an_hour_ago = time.time() - TEMPORARY_MAX_AGE - 60
    os.utime(killed, (an_hour_ago, an_hour_ago))  # a writer killed an hour ago; the other one is writing now
    parts = partitions(writer, TABLES)
    assert "1 leftover temporary file(s) to remove" in plan(writer, parts, 1 << 30).describe()

    result = compact(writer)

    assert result.temporaries_removed == 1
    assert not os.path.exists(killed) and os.path.exists(writing)


def test_an_input_removed_under_a_compaction_on_s3_fails_in_one_line_naming_it_and_why(s3_location, moto_server):
    options = {"s3_endpoint_url": moto_server.endpoint_url}
    writer = Writer(Options.resolve(s3_location, **options))
    write_history(writer, runs=history_runs_for_a_busy_compaction(options))

    with stopped_mid_compaction(s3_location, options, writer, "--target-size", small_bins(writer)) as first:
        # Another process (a retention job, someone's "aws s3 rm") removes the files the compaction planned.
        writer.fs.rm(data_files(writer))

    status, _, err = finished(first)
    assert status == EXIT_FAILURE, err
    (line,) = err.splitlines()
    assert line.startswith("otel-datasink compact: ") and "cannot read " in line, line
    assert f"{writer.root}/" in line and ".parquet: it no longer exists (removed since" in line, line
