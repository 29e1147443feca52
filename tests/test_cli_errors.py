"""Failures of ``otel-datasink status``, ``query``, ``demo``, ``compact`` and ``replay``, as a cron job sees them:
the real console script in a subprocess, on real files, a read-only mount and the moto S3 server. Every failure is
one line ``otel-datasink <command>: <cause>`` on stderr and exit status 2, never a traceback and never "0 rows,
exit 0".
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from command_line import EXIT_FAILURE, assert_one_line_failure, cli, command, environment
from disks import remount_read_only, tmpfs
from job_spans import MINUTE_NS, job_span, now_ns, write_spans
from network import free_port
from s3_server import MotoServer

EXIT_STDOUT_CLOSED = 141
STATUS = ("status", "--fail-on-stale")
QUERY = ("query", "SELECT count(*) AS runs FROM job_runs")
CSV_HEADER = {
    "status": "dataset,is_stale,last_status,last_success_at,data_as_of,freshness_minutes,freshness_sla_minutes,"
    "record_count,last_job_name",
    "query": "runs",
}


# --- a location with no table: status and query ----------------------------------------------------------


def _missing(tmp_path: Path) -> tuple[str, str]:
    return str(tmp_path / "no-such-folder"), "does not exist"


def _a_file(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "plain").write_text("not tables\n")
    return str(tmp_path / "plain"), "is a file, not a folder of tables"


def _under_a_file(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "plain").write_text("not tables\n")
    return str(tmp_path / "plain" / "datasink"), "does not exist"


def _empty_folder(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "empty").mkdir()
    return str(tmp_path / "empty"), "holds no job_runs or dataset_status or dataset_checks files"


def _unrelated_files(tmp_path: Path) -> tuple[str, str]:
    # Folders named like a table, a partition and a non-Parquet file in it: still no table.
    folder = tmp_path / "other"
    (folder / "job_runs" / "dt=2026-01-01").mkdir(parents=True)
    (folder / "job_runs" / "dt=2026-01-01" / "notes.txt").write_text("x")
    (folder / "report.csv").write_text("a,b\n")
    return str(folder), "holds no job_runs or dataset_status or dataset_checks files"


LOCAL_CASES = [_missing, _under_a_file, _empty_folder, _unrelated_files]


@pytest.mark.parametrize("args", [STATUS, QUERY], ids=["status", "query"])
@pytest.mark.parametrize("case", LOCAL_CASES, ids=lambda case: case.__name__.strip("_"))
def test_a_local_location_with_no_table_fails_in_one_line(tmp_path, case, args):
    location, cause = case(tmp_path)
    done = cli(*args, "--location", location)
    line = assert_one_line_failure(done, args[0], location, cause, "--allow-empty")
    assert done.stdout == "", line


@pytest.mark.parametrize("args", [STATUS, QUERY], ids=["status", "query"])
@pytest.mark.parametrize("case", [_missing, _empty_folder], ids=["missing", "empty_folder"])
def test_allow_empty_accepts_a_location_with_no_table(tmp_path, case, args):
    location, _ = case(tmp_path)
    done = cli(*args, "--location", location, "--allow-empty", "--format", "csv")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[0] == CSV_HEADER[args[0]]


def test_a_location_with_only_dataset_status_is_a_location_with_tables(tmp_path):
    # A table without files next to one with files is an empty table, not an error (a job with no datasets).
    location = str(tmp_path / "datasink")
    n = now_ns()
    write_spans(location, [job_span("load", n - 2 * MINUTE_NS, n - MINUTE_NS, dataset="orders")])
    shutil.rmtree(Path(location) / "job_runs")
    done = cli(*QUERY, "--location", location, "--format", "csv")
    assert (done.returncode, done.stdout, done.stderr) == (0, "runs\n0\n", "")


@pytest.fixture
def s3_env(moto_server) -> dict[str, str]:
    """The moto server as the location's S3 endpoint."""
    return {"OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL": moto_server.endpoint_url}


@pytest.mark.parametrize("args", [STATUS, QUERY], ids=["status", "query"])
def test_an_empty_s3_prefix_fails_unless_allowed(s3_location, s3_env, args):
    done = cli(*args, "--location", s3_location, **s3_env)
    assert_one_line_failure(done, args[0], f"nothing is stored under {s3_location}", "--allow-empty")
    allowed = cli(*args, "--location", s3_location, "--allow-empty", **s3_env)
    assert (allowed.returncode, allowed.stderr) == (0, "")


@pytest.mark.parametrize("args", [STATUS, QUERY], ids=["status", "query"])
def test_a_missing_bucket_fails_even_when_empty_is_allowed(s3_env, args):
    # A bucket never fills up by itself: --allow-empty does not excuse a typo in its name.
    location = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/datasink"
    done = cli(*args, "--location", location, **s3_env)
    assert_one_line_failure(done, args[0], f"bucket {location[5:].split('/')[0]} of {location} does not exist")
    allowed = cli(*args, "--location", location, "--allow-empty", **s3_env)
    assert_one_line_failure(allowed, args[0], "bucket does not exist")


def test_an_unreachable_s3_endpoint_fails_in_one_line(s3_location, moto_server):
    done = cli(
        *STATUS, "--location", s3_location, OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}"
    )
    assert_one_line_failure(done, "status", "Could not connect to the endpoint URL")


def test_a_bad_query_on_a_real_location_fails_in_one_line(tmp_path):
    location = str(tmp_path / "datasink")
    n = now_ns()
    write_spans(location, [job_span("load", n - 2 * MINUTE_NS, n - MINUTE_NS)])
    done = cli("query", "--location", location, "SELECT nope FROM job_runs")
    assert_one_line_failure(done, "query", 'Binder Error: Referenced column "nope" not found')


# --- a file as the location: every command that reads or writes one ---------------------------------------

EXAMPLE_SPANS = Path(__file__).resolve().parent.parent / "examples" / "replay_jsonl" / "traces.jsonl"
ON_A_LOCATION = {
    "query": ("--allow-empty", "SELECT count(*) FROM job_runs"),
    "status": ("--allow-empty",),
    "alert": ("--allow-empty", "--dry-run"),
    "report": ("--out", "{folder}/report.html"),
    "serve": ("--listen", "127.0.0.1:0"),
    "demo": (),
    "replay": (str(EXAMPLE_SPANS),),
    "compact": (),
    "collector": ("--http", "127.0.0.1:0", "--grpc", "none", "--spool-dir", "{folder}/spool"),
}
"""Each command that reads or writes ``--location``, with what it needs besides; served or read as empty tables,
a file location would not fail (``--allow-empty``), or only at each write."""


@pytest.mark.parametrize("name", ON_A_LOCATION)
@pytest.mark.parametrize("url", [False, True], ids=["path", "file_url"])
def test_a_file_as_the_location_is_refused_in_one_line_by_every_command(tmp_path, name, url):
    (tmp_path / "plain").write_text("not tables\n")
    location = (tmp_path / "plain").as_uri() if url else str(tmp_path / "plain")
    args = [arg.format(folder=tmp_path) for arg in ON_A_LOCATION[name]]
    done = cli(name, "--location", location, *args)
    assert_one_line_failure(done, name, f"{location} is a file, not a folder of tables")
    assert done.stdout == "" and (tmp_path / "plain").read_text() == "not tables\n"


# --- a closed stdout: query | head, report --out - | head -c 100 ------------------------------------------


def test_query_into_a_pipe_closed_early_exits_quietly(tmp_path):
    location = str(tmp_path / "datasink")
    n = now_ns()
    write_spans(location, [job_span("load", n - 2 * MINUTE_NS, n - MINUTE_NS)])
    # Far more than a pipe and stdout's buffer hold, so the writes meet the closed pipe.
    sql = "SELECT range AS n, repeat('x', 40) AS filler FROM range(200000)"
    with subprocess.Popen(
        command("query", "--location", location, sql), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment()
    ) as process:
        assert process.stdout.readline().split() == [b"n", b"filler"]
        process.stdout.close()  # what `| head -1` does once it has its line
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=60) == EXIT_STDOUT_CLOSED
    assert stderr == ""


def test_a_report_to_stdout_into_a_pipe_closed_early_exits_quietly(tmp_path):
    location = str(tmp_path / "datasink")
    n = now_ns()
    # A dozen jobs and datasets: a page of over 100 KiB, more than a pipe holds.
    write_spans(
        location, [job_span(f"job_{i}", n - (i + 2) * MINUTE_NS, n - MINUTE_NS, dataset=f"d{i}") for i in range(12)]
    )
    report = command("report", "--location", location, "--out", "-", "--no-progress")
    with subprocess.Popen(report, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment()) as process:
        assert process.stdout.read(100).startswith(b"<!DOCTYPE html>")
        process.stdout.close()  # what `| head -c 100` does once it has its bytes
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=60) == EXIT_STDOUT_CLOSED
    assert stderr == ""  # and no "wrote -: ..." line


# --- demo on a location it cannot write -------------------------------------------------------------------


def assert_demo_failed(done: subprocess.CompletedProcess, location: str, cause: str) -> None:
    """The demo said why in one line and printed neither "wrote to" nor (empty) tables."""
    assert_one_line_failure(done, "demo", f"could not write to {location}: ", cause)
    assert done.stdout == ""


def test_demo_into_a_folder_under_a_file_fails(tmp_path):
    (tmp_path / "plain").write_text("x")
    location = str(tmp_path / "plain" / "datasink")
    assert_demo_failed(cli("demo", "--location", location), location, "Not a directory")


def test_demo_into_a_location_that_cannot_be_a_folder_fails_at_once_not_after_the_write_timeout(tmp_path):
    # "Not a directory" and a read-only filesystem are not transient: no retry until the 30 s write timeout.
    (tmp_path / "plain").write_text("x")
    location = str(tmp_path / "plain" / "datasink")
    started = time.monotonic()
    done = subprocess.run(
        command("demo", "--location", location), capture_output=True, text=True, timeout=120, env=environment()
    )
    assert_demo_failed(done, location, "Not a directory")
    assert time.monotonic() - started < 20


@pytest.fixture
def read_only_folder(tmp_path) -> Iterator[Path]:
    """A read-only disk (root can write to any folder a chmod protects, not to a read-only mount)."""
    with tmpfs(tmp_path / "read-only", read_only=True) as folder:
        yield folder


def test_demo_into_a_read_only_folder_fails(read_only_folder):
    location = str(read_only_folder / "datasink")
    assert_demo_failed(cli("demo", "--location", location), location, "Read-only file system")


def test_demo_into_a_missing_bucket_fails(s3_env):
    location = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/datasink"
    assert_demo_failed(cli("demo", "--location", location, **s3_env), location, "bucket does not exist")


def test_demo_into_an_s3_bucket_succeeds(s3_location, s3_env, read_tables, moto_server):
    # The same command, on a bucket that exists: the failures above are the store's, not the demo's.
    done = cli("demo", "--location", s3_location, **s3_env)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"wrote to {s3_location}\n")
    assert read_tables(s3_location, moto_server.endpoint_url).rows("job_runs")


# --- asking for more: -v and -vv --------------------------------------------------------------------------


def test_verbose_demo_shows_the_processor_warnings_before_its_one_line_failure(tmp_path):
    (tmp_path / "plain").write_text("x")
    location = str(tmp_path / "plain" / "datasink")
    done = cli("-v", "demo", "--location", location)
    assert done.returncode == EXIT_FAILURE
    *warnings, last = done.stderr.splitlines()
    assert any("WARNING otel_datasink.processor" in line for line in warnings), done.stderr
    assert last.startswith(f"otel-datasink demo: could not write to {location}: ")


def test_debug_logging_adds_the_traceback_of_a_failure(tmp_path):
    done = cli("-vv", "status", "--location", str(tmp_path / "missing"))
    assert done.returncode == EXIT_FAILURE
    assert "Traceback (most recent call last)" in done.stderr and "NoTablesError" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("otel-datasink status: ")


# --- compact on a location it cannot use ------------------------------------------------------------------


@pytest.fixture
def read_only_tables(tmp_path) -> Iterator[str]:
    """A location with tables on a disk made read-only once they are written."""
    with tmpfs(tmp_path / "mounted", "4m") as folder:
        location = str(folder / "datasink")
        n = now_ns()
        for start in (3, 2):  # two files in a partition: something to compact
            write_spans(location, [job_span("load", n - start * MINUTE_NS, n - MINUTE_NS)])
        remount_read_only(folder, "4m")
        yield location


def test_compact_on_a_read_only_folder_fails_in_one_line(read_only_tables):
    done = cli("compact", "--location", read_only_tables, "--no-progress")
    line = assert_one_line_failure(done, "compact", f"cannot write {read_only_tables}/", ": Read-only file system")
    assert "OSError(" not in line and "WriteError" not in line


@pytest.mark.parametrize("case", [_missing, _a_file, _under_a_file], ids=lambda case: case.__name__.strip("_"))
def test_compact_on_a_location_with_no_table_fails_instead_of_compacting_nothing(tmp_path, case):
    location, cause = case(tmp_path)
    assert_one_line_failure(cli("compact", "--location", location), "compact", location, cause.split(",")[0])


def test_compact_on_a_missing_bucket_fails(s3_env):
    location = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/datasink"
    done = cli("compact", "--location", location, **s3_env)
    assert_one_line_failure(done, "compact", f"bucket {location[5:].split('/')[0]} of {location} does not exist")


def test_compact_on_an_unreachable_endpoint_fails_in_one_line(s3_location):
    done = cli("compact", "--location", s3_location, "--s3-endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert_one_line_failure(done, "compact", "Could not connect to the endpoint URL")


# --- bad S3 credentials: moto with its IAM checks on ------------------------------------------------------


@pytest.fixture(scope="module")
def s3_refusing_keys(moto_server) -> Iterator[str]:
    """The endpoint of a second moto server that checks credentials (every request of the fake key is refused)."""
    server = MotoServer({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    server.start()
    try:
        yield server.endpoint_url
    finally:
        server.stop()


@pytest.mark.parametrize(
    "args",
    [("demo",), ("compact",), ("query", "SELECT 1"), ("status",), ("query", "--allow-empty", "SELECT 1")],
    ids=["demo", "compact", "query", "status", "query_allow_empty"],
)
def test_bad_s3_credentials_fail_in_one_line_that_says_so(s3_refusing_keys, args):
    location = "s3://some-bucket/datasink"
    done = cli(*args, "--location", location, "--s3-endpoint-url", s3_refusing_keys)
    line = assert_one_line_failure(done, args[0], "The AWS Access Key Id you provided does not exist in our records")
    assert "CREATE OR REPLACE VIEW" not in line and "read_parquet" not in line


# --- query --dialect athena with SQL that does not parse --------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "cause"),
    [
        ("SELECT (((", "cannot parse the query at line 1, column 10 near '('"),
        ("SELECT * FROM job_runs WHERE", "cannot parse the query at line 1, column 28 near 'WHERE'"),
        ("SELECT 'abc", "cannot parse the query: Error tokenizing"),
    ],
)
def test_athena_sql_that_does_not_parse_fails_in_one_plain_line(tmp_path, sql, cause):
    location = str(tmp_path / "datasink")
    n = now_ns()
    write_spans(location, [job_span("load", n - 2 * MINUTE_NS, n - MINUTE_NS)])
    done = cli("query", "--location", location, "--dialect", "athena", sql)
    line = assert_one_line_failure(done, "query", f"--dialect athena: {cause}")
    assert "\x1b" not in done.stderr and "sqlglot" not in line and "<class" not in line


# --- replay: the same statuses as every command -----------------------------------------------------------


def test_replay_of_a_missing_file_and_an_unknown_profile_exit_2_like_the_rest(tmp_path):
    (tmp_path / "t.jsonl").write_text("")
    missing = cli("replay", "--location", str(tmp_path / "t"), str(tmp_path / "missing.jsonl"))
    assert_one_line_failure(missing, "replay", "cannot read", "No such file or directory")
    profile = cli("replay", "--location", str(tmp_path / "t"), "--profile", "nope", str(tmp_path / "t.jsonl"))
    assert_one_line_failure(profile, "replay", "unknown mapping profile 'nope'")
