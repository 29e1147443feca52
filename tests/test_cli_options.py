"""The command line itself, as a shell user meets it: ``--version``, ``-v`` before or after the command, usage
errors on one line (an unknown option with the one meant), the shared location options and their help, and what
``--help`` imports. Each runs the real console script in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import pytest
from command_line import assert_one_line_failure, cli, environment
from job_spans import MINUTE_NS, job_span, now_ns, write_spans

from otel_datasink import cli as cli_module
from otel_datasink import compact, replay, schema
from otel_datasink.commands import compact as compact_command
from otel_datasink.commands import replay as replay_command

HEAVY = ("grpc", "aiohttp", "duckdb", "tqdm")


def test_version_prints_the_installed_distributions_version():
    done = cli("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"otel-datasink {version('otel-datasink')}\n", "")


def test_the_package_version_is_the_installed_distributions_one_source():
    import otel_datasink

    assert otel_datasink.__version__ == version("otel-datasink")
    assert "__version__" not in vars(otel_datasink)  # not a second copy kept beside pyproject.toml's


@pytest.mark.parametrize(
    "flags", [("-v", "query"), ("query", "-v"), ("-vv", "query"), ("query", "-vv"), ("-v", "query", "-v")]
)
def test_verbose_is_taken_before_or_after_the_command(tmp_path, flags):
    done = cli(*flags, "--location", str(tmp_path / "missing"), "SELECT 1")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith("otel-datasink query: ")
    verbosity = sum(flag.count("v") for flag in flags if flag.startswith("-"))
    # -vv, however split: debug logging, the failure's traceback logged before the one line.
    assert ("Traceback" in done.stderr) == (verbosity >= 2)


# One mistyped option per command, with the option it is closest to (the words after it included: argparse may take
# them for another argument, as query's SQL).
MISTYPED = [
    (("query", "--fromat", "json", "SELECT 1"), "--fromat", "--format"),
    (("status", "--fromat=json"), "--fromat", "--format"),
    (("demo", "--micro-bathces", "2"), "--micro-bathces", "--micro-batches"),
    (("ddl", "--locatoin", "s3://bucket/prefix"), "--locatoin", "--location"),
    (("collector", "--htp", "127.0.0.1:0"), "--htp", "--http"),
    (("replay", "--locaton", "x", "spans.jsonl"), "--locaton", "--location"),
    (("compact", "--dry-rn"), "--dry-rn", "--dry-run"),
    (("alert", "--dryrun"), "--dryrun", "--dry-run"),
    (("report", "--out", "x.html", "--dasy", "3"), "--dasy", "--days"),
    (("serve", "--lisen", "127.0.0.1:0"), "--lisen", "--listen"),
]


@pytest.mark.parametrize(("args", "typo", "meant"), MISTYPED, ids=[args[0] for args, _, _ in MISTYPED])
def test_an_unknown_option_is_one_line_naming_it_and_the_option_meant(tmp_path, args, typo, meant):
    done = cli(*args, "--location", str(tmp_path / "datasink"))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"otel-datasink {args[0]}: error: unknown option {typo} (did you mean {meant}?)\n"


def test_an_unknown_option_close_to_none_is_named_alone(tmp_path):
    done = cli("query", "--xyz", "SELECT 1", "--location", str(tmp_path))
    assert (done.returncode, done.stderr) == (2, "otel-datasink query: error: unknown option --xyz\n")


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("query",), "the following arguments are required: sql"),
        (("query", "--format", "jsno", "SELECT 1"), "argument --format: invalid choice: 'jsno'"),
        (("report", "--days", "0", "--out", "x.html"), "argument --days: must be 1 to 400, not 0"),
        (("qurey",), "argument COMMAND: invalid choice: 'qurey'"),
    ],
)
def test_every_usage_error_is_one_line_without_the_usage_block(args, what):
    done = cli(*args)
    assert (done.returncode, done.stdout) == (2, "")
    assert len(done.stderr.splitlines()) == 1 and what in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("dt", "cause"),
    [
        ("27-05-2026", "argument --dt: must be YYYY-MM-DD, not '27-05-2026'"),
        ("2026-13-01", "argument --dt: not a date: '2026-13-01' (month must be in 1..12)"),
        ("2026-02-30", "argument --dt: not a date: '2026-02-30' (day is out of range for month)"),
    ],
)
def test_a_dt_that_is_no_date_is_a_one_line_usage_error_of_compact_not_zero_partitions(tmp_path, dt, cause):
    location = str(tmp_path / "datasink")
    n = now_ns()
    write_spans(location, [job_span("load", n - 2 * MINUTE_NS, n - MINUTE_NS)])
    done = cli("compact", "--location", location, "--dt", dt)
    assert_one_line_failure(done, "compact", f"error: {cause}")
    assert done.stdout == ""


@pytest.mark.parametrize("name", ["demo", "query", "status", "replay", "compact", "collector"])
def test_every_command_on_a_store_takes_the_endpoint_and_names_the_environment_and_the_aws_chain(name):
    done = cli(name, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps the help
    for words in ("--location", "OTEL_EXPORTER_DATASINK_LOCATION", "--s3-endpoint-url"):
        assert words in text, (name, words)
    assert "OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL" in text
    if name != "collector":  # the collector's own flags replace the shared ones until it uses them
        assert "AWS_ACCESS_KEY_ID" in text and "~/.aws" in text and "instance or task role" in text


@pytest.mark.parametrize("name", ["demo", "replay", "collector"])
def test_every_command_that_maps_spans_takes_a_profile(name):
    text = " ".join(cli(name, "--help").stdout.split())
    assert "--profile" in text and "OTEL_EXPORTER_DATASINK_PROFILE" in text


def test_ddl_help_says_its_location_is_s3_only_but_for_duckdb():
    text = " ".join(cli("ddl", "--help").stdout.split())
    assert "s3://bucket/prefix of the tables (Athena reads S3 only: a local path is refused); with --duckdb" in text
    assert "--s3-endpoint-url" in text  # the DuckDB file's store


def test_the_endpoint_flag_reaches_the_store(s3_location, moto_server):
    # The flag, not the environment: no OTEL_ variable is set in the command's environment.
    done = cli("demo", "--location", s3_location, "--s3-endpoint-url", moto_server.endpoint_url)
    assert (done.returncode, done.stderr) == (0, "")
    query = ("query", "--location", s3_location, "--format", "json", "SELECT count(*) AS n FROM job_runs")
    done = cli(*query, "--s3-endpoint-url", moto_server.endpoint_url)
    assert json.loads(done.stdout)[0]["n"] > 0


def test_top_level_help_lists_every_command_and_the_exit_statuses():
    done = cli("--help")
    assert done.returncode == 0
    for name in cli_module.COMMANDS:
        assert f"    {name} " in done.stdout
    assert "130 interrupted" in " ".join(done.stdout.split())


def _imported(*args: str) -> set[str]:
    """The heavy modules ``otel-datasink args...`` imports (python -X importtime lists each import)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "otel_datasink.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(),
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return names & set(HEAVY)


@pytest.mark.parametrize(
    "args", [("--help",), ("ddl", "--help"), ("ddl", "--location", "s3://bucket/prefix"), ("query", "--help")]
)
def test_help_and_ddl_import_neither_grpc_nor_aiohttp_nor_duckdb_nor_tqdm(args):
    assert _imported(*args) == set()


def test_the_commands_defaults_are_the_librarys():
    # Copied so that --help imports neither pyarrow nor the replay pipeline; pinned here.
    assert replay_command.DEFAULT_BATCH_SPANS == replay.DEFAULT_BATCH_SPANS
    assert compact_command.DEFAULT_TARGET_SIZE == compact.DEFAULT_TARGET_SIZE
    assert set(compact_command.TABLE_NAMES) == set(schema.TABLES)
