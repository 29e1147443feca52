"""The command line itself, as a shell user meets it: ``--version``, ``-v`` before or after the command, usage
errors with the command's own usage, the shared location options and their help, and what ``--help`` imports.
Each runs the real console script in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import pytest
from test_cli_errors import cli, environment

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


def test_a_mistyped_flag_shows_the_commands_usage_not_the_top_levels(tmp_path):
    done = cli("query", "--locaton", str(tmp_path), "SELECT 1")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("usage: otel-datasink query ")
    # argparse took the folder for the SQL: the flag and the extra word are what it does not know.
    assert done.stderr.splitlines()[-1] == "otel-datasink query: error: unrecognized arguments: --locaton SELECT 1"


def test_a_bad_dt_is_a_usage_error_of_compact(tmp_path):
    done = cli("compact", "--location", str(tmp_path), "--dt", "27-05-2026")
    assert done.returncode == 2
    assert (
        done.stderr.splitlines()[-1]
        == "otel-datasink compact: error: argument --dt: must be YYYY-MM-DD, not '27-05-2026'"
    )


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


def test_ddl_help_says_its_location_is_s3_only():
    text = " ".join(cli("ddl", "--help").stdout.split())
    assert "s3://bucket/prefix of the tables (Athena reads S3 only: a local path is refused)" in text
    assert "--s3-endpoint-url" not in text and "local path or fsspec URL" not in text


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
