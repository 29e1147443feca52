"""Ctrl-C: a command stopped by SIGINT says what it did, in one line, and exits 130, never with a traceback; a
service (``serve``, ``collector``) first stops as cleanly as on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from collectors import CollectorProcess, rows
from command_line import command, environment
from job_spans import MINUTE_NS, job_span, now_ns, write_spans
from otlp_payloads import nightly_spans, otlp_json_line

from otel_datasink.schema import STORED_TABLES

EXIT_INTERRUPTED = 130
ENDLESS = "SELECT count(*) FROM range(10000000000000) AS t(i) WHERE i % 7 = 3"
"""A query of hours on any machine (10^13 rows, about 5 * 10^9 a second on 2 cores here), in constant memory:
one Ctrl-C ends it at once, or the test fails."""
PROMPT_SECONDS = 15.0
"""The most a Ctrl-C'd command may take to exit: generous (it is well under a second), as CI may be loaded."""
SUMMARY_LINE = r"wrote (\d+) row\(s\) \(\d+ job_runs, \d+ dataset_status\) in (\d+) file\(s\)"


def big_jsonl(path: Path, lines: int) -> Path:
    """An OTLP JSON Lines file far longer than a few seconds of replay (the same spans again and again: a replay
    writes them again, which the views collapse)."""
    line = otlp_json_line(nightly_spans(0)) + "\n"
    with path.open("w") as out:
        out.write(line * lines)
    return path


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("launcher", ["script", "module"])
def test_ctrl_c_during_replay_prints_what_was_written_and_exits_130(tmp_path, launcher):
    # Also as `python -m otel_datasink.cli`, where cli.py runs as __main__ and is imported again by the commands:
    # replay's own "interrupted; wrote ..." was taken for any error there, and said only "interrupted".
    source = big_jsonl(tmp_path / "big.jsonl", 50_000)
    location = tmp_path / "datasink"
    args = ("replay", "--location", str(location), "--batch-spans", "20", "--no-progress", str(source))
    launch = command(*args) if launcher == "script" else [sys.executable, "-m", "otel_datasink.cli", *args]
    with subprocess.Popen(
        launch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment()
    ) as process:
        # Once a first batch is written and counted: its file and the next batch's (batches are written one
        # after the other, so the second file means the first write returned), not a fixed sleep.
        wait_for(lambda: len(list(location.glob("job_runs/dt=*/*.parquet"))) >= 2)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr
    (line,) = stderr.splitlines()
    assert line.startswith("otel-datasink replay: interrupted; wrote "), line
    assert "replaying the files again adds only duplicates" in line
    # The summary on stdout, as a replay that ran to its end prints it: what is stored now.
    match = re.search(SUMMARY_LINE, stdout)
    assert match, stdout
    rows, files = int(match.group(1)), int(match.group(2))
    stored = sorted(location.glob("*/dt=*/*.parquet"))
    assert 0 < files <= len(stored) <= files + 2  # a batch in flight adds at most one file per table
    assert rows <= sum(pq.read_metadata(path).num_rows for path in stored)
    assert f"wrote {rows} row(s) in {files} file(s)" in line
    assert not list(location.glob("*/dt=*/.*.tmp"))  # no half-written file left behind


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_in_query(process: subprocess.Popen, started: str) -> None:
    """Returns once ``process`` has written a stderr line holding ``started`` (what it says just before its long
    query; the lines before it are read and dropped) and burnt 0.3 s of CPU more: it is inside the query, not
    before it."""
    line = process.stderr.readline()
    while line and started not in line:
        line = process.stderr.readline()
    assert started in line, "the process ended before saying " + repr(started)
    busy = cpu_seconds(process.pid) + 0.3
    wait_for(lambda: cpu_seconds(process.pid) > busy)


def interrupt(process: subprocess.Popen) -> tuple[float, str, str]:
    """Sends SIGINT to ``process``: the seconds it took to exit, its stdout and its stderr (all of it). A process
    still running after :data:`PROMPT_SECONDS` fails the test (the queries it runs take hours)."""
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=PROMPT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {PROMPT_SECONDS:g}s after Ctrl-C: its DuckDB queries were not interrupted")
    return time.monotonic() - sent, stdout, stderr


def test_ctrl_c_interrupts_a_long_duckdb_query_at_once(tmp_path):
    # DuckDB alone notices the KeyboardInterrupt only when the query ends; the query here would take hours.
    location = tmp_path / "datasink"
    write_spans(str(location), [job_span("load", now_ns() - MINUTE_NS, now_ns(), dataset="orders")])
    process = subprocess.Popen(
        command("-v", "query", "--location", str(location), ENDLESS),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        # local.connect logs each table it finds no file of, the last of STORED_TABLES last; the query follows.
        wait_in_query(process, f"no files for {list(STORED_TABLES)[-1]} yet")
        seconds, stdout, stderr = interrupt(process)
    finally:
        process.kill()  # a query left running would outlive the test
        process.wait()
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert stderr.splitlines() == ["otel-datasink query: interrupted"]
    assert stdout == ""
    assert seconds < PROMPT_SECONDS


SLOW_REPORT = """
import sys

from otel_datasink import cli
from otel_datasink.report import data

def slowly(evaluate):
    # A view evaluation of hours, on the report's own connection, in the builder's thread.
    def slow(con, *args):
        print(evaluate.__name__, "running", file=sys.stderr, flush=True)
        con.execute({endless!r}).fetchall()
        return evaluate(con, *args)
    return slow

data.trends, data.datasets = slowly(data.trends), slowly(data.datasets)
sys.exit(cli.main(sys.argv[1:]))
"""


def test_ctrl_c_interrupts_the_queries_of_the_reports_threads(tmp_path):
    # The report evaluates the views on four connections, three in a thread pool: the main thread stops at
    # once on Ctrl-C, then waits for the pool, whose queries DuckDB alone would let run to their end.
    location = tmp_path / "datasink"
    write_spans(str(location), [job_span("load", now_ns() - MINUTE_NS, now_ns(), dataset="orders")])
    script = textwrap.dedent(SLOW_REPORT).format(endless=ENDLESS)
    out = tmp_path / "report.html"
    args = ("report", "--location", str(location), "--out", str(out), "--no-progress")
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        wait_in_query(process, "running")
        second = process.stderr.readline()  # both threads' queries run
        assert "running" in second, second
        seconds, stdout, stderr = interrupt(process)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines() == ["otel-datasink report: interrupted"]
    assert stdout == ""
    assert not out.exists()
    assert seconds < PROMPT_SECONDS


def test_ctrl_c_while_the_commands_modules_import_exits_130_in_one_line(tmp_path):
    # Most of a command's first second goes on importing its modules (pyarrow, sqlglot, DuckDB) while its options
    # are parsed: a real SIGINT is sent to the process as sqlglot starts importing.
    script = textwrap.dedent(
        f"""
        import builtins, os, signal, sys
        from otel_datasink.cli import main

        real_import = builtins.__import__

        def import_(name, *args, **kwargs):
            if name == "sqlglot" and "sqlglot" not in sys.modules:
                os.kill(os.getpid(), signal.SIGINT)
            return real_import(name, *args, **kwargs)

        builtins.__import__ = import_
        sys.exit(main(["query", "--location", {str(tmp_path)!r}, "SELECT 1"]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=environment())
    assert done.returncode == EXIT_INTERRUPTED, done.stderr
    assert done.stderr.splitlines() == ["otel-datasink query: interrupted"]


def test_ctrl_c_stops_serve_as_sigterm_does_then_exits_130_saying_so(tmp_path):
    # It exited 0, as on SIGTERM: a shell or script could not tell a Ctrl-C'd serve from one that ended by itself.
    pytest.importorskip("vl_convert", reason="the report extra (vl-convert-python) is not installed")
    location = tmp_path / "datasink"
    location.mkdir()  # empty: its page (which says so) is quick to build
    with subprocess.Popen(
        command("serve", "--location", str(location), "--listen", "127.0.0.1:0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    ) as process:
        serving = process.stdout.readline()
        assert serving.startswith("serving http://"), process.stderr.read()
        url = serving.split()[1]
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert stderr.splitlines() == [f"otel-datasink serve: interrupted; stopped serving {url}"]
    assert stdout == "stopped\n"  # the same clean stop as SIGTERM's


def test_ctrl_c_on_the_collector_writes_every_batch_then_exits_130_saying_so(local_location, tmp_path):
    # It exited 0, as on SIGTERM (what a service manager sends, which stays 0).
    spool = tmp_path / "spool"
    collector = CollectorProcess(local_location, spool, tmp_path / "log", "--flush-age", "3600")
    sent = collector.export(4)  # held in the open batch: only the stop writes them
    collector.process.send_signal(signal.SIGINT)
    code = collector.process.wait(timeout=60)
    log = (tmp_path / "log").read_text()
    assert code == EXIT_INTERRUPTED, log
    assert "Traceback" not in log
    assert log.splitlines()[-1] == "otel-datasink collector: interrupted; every batch written"
    assert {row["span_id"] for row in rows(local_location, timeout=0)} == sent
    assert not list(spool.glob("*.seg"))
