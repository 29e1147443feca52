"""Zero-code: ``OTEL_TRACES_EXPORTER=datasink opentelemetry-instrument python job.py`` writes the tables.

The jobs run in a subprocess under the real ``opentelemetry-instrument`` (opentelemetry-distro), configured by
environment variables only, as a fleet already running it would be.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
INSTRUMENT = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent)) or shutil.which(
    "opentelemetry-instrument"
)

pytestmark = pytest.mark.skipif(INSTRUMENT is None, reason="opentelemetry-distro is not installed")


def _instrument(script: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    # PYTHONPATH stays: with it, a checkout's own code is what the job imports (as every other subprocess test).
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "AWS_ENDPOINT"))}
    environment.update(
        {
            "OTEL_TRACES_EXPORTER": "datasink",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_SERVICE_NAME": "zero-code-job",
            **env,
        }
    )
    return subprocess.run(
        [INSTRUMENT, sys.executable, str(EXAMPLES / script), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_opentelemetry_instrument_with_datasink_exporter_writes_the_jobs_runs(local_location, read_tables):
    done = _instrument(
        "backfill_job.py",
        ["--start", "2026-01-01", "--end", "2026-01-03"],
        {"OTEL_EXPORTER_DATASINK_LOCATION": local_location},
    )
    assert done.returncode == 0, done.stderr
    runs = read_tables(local_location).rows("job_runs")
    # The exporter path writes terminal rows only: one per backfilled day.
    assert sorted((r["status"], r["logical_date"].date().isoformat()) for r in runs) == [
        ("SUCCESS", "2026-01-01"),
        ("SUCCESS", "2026-01-02"),
        ("SUCCESS", "2026-01-03"),
    ]
    assert {(r["job_name"], r["run_type"], r["service_name"]) for r in runs} == {
        ("ingest_orders", "backfill", "zero-code-job")
    }
    updates = read_tables(local_location).rows("dataset_status")
    assert sorted(u["watermark"] for u in updates) == [datetime(2026, 1, day, tzinfo=timezone.utc) for day in (1, 2, 3)]


def _documented(script: str) -> tuple[dict[str, str], list[str]]:
    """The environment and the command of the zero-code line in ``script``'s docstring, as a reader copies it."""
    doc = ast.get_docstring(ast.parse((EXAMPLES / script).read_text())) or ""
    [line] = [line for line in doc.replace("\\\n", " ").splitlines() if "opentelemetry-instrument" in line]
    words = shlex.split(line)
    assignments = list(itertools.takewhile(lambda word: re.match(r"[A-Z_]+=", word), words))
    return dict(word.split("=", 1) for word in assignments), words[len(assignments) :]


@pytest.mark.parametrize(
    ("script", "jobs"),
    [
        ("backfill_job.py", {"ingest_orders"}),
        ("airflow_spans.py", {"ingest_orders", "ingest_orders.extract", "ingest_orders.load"}),
    ],
)
def test_the_zero_code_examples_run_as_documented_with_no_collector_to_send_metrics_to(
    tmp_path, read_tables, script, jobs
):
    # Nothing listens on localhost:4317, where the distro's default metrics exporter sends: the exporter's own
    # metrics made it retry there for 8 s at exit, unless OTEL_METRICS_EXPORTER=none was added.
    documented, command = _documented(script)
    assert command[:3] == ["opentelemetry-instrument", "python", f"examples/{script}"]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    run = [INSTRUMENT, sys.executable, str(EXAMPLES / script), *command[3:]]
    started = time.monotonic()
    done = subprocess.run(
        run, env={**environment, **documented}, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert time.monotonic() - started < 30
    assert {row["job_name"] for row in read_tables(str(tmp_path / "datasink")).rows("job_runs")} == jobs


def test_opentelemetry_instrument_honours_the_profile_variable(tmp_path, read_tables):
    narrowed = {
        "OTEL_EXPORTER_DATASINK_LOCATION": str(tmp_path / "contract"),
        "OTEL_EXPORTER_DATASINK_PROFILE": "contract",
    }
    done = _instrument("airflow_spans.py", [], narrowed)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "contract" / "job_runs").exists()  # narrowed to the contract's spans: Airflow's are not runs

    with_profile = str(tmp_path / "airflow")
    done = _instrument(
        "airflow_spans.py",
        [],
        {"OTEL_EXPORTER_DATASINK_LOCATION": with_profile, "OTEL_EXPORTER_DATASINK_PROFILE": "airflow"},
    )
    assert done.returncode == 0, done.stderr
    runs = read_tables(with_profile).rows("job_runs")
    assert sorted((r["job_name"], r["attempt"], r["status"]) for r in runs) == [
        ("ingest_orders", 1, "SUCCESS"),
        ("ingest_orders.extract", 1, "FAILED"),
        ("ingest_orders.extract", 2, "SUCCESS"),
        ("ingest_orders.load", 1, "SUCCESS"),
    ]


def test_opentelemetry_instrument_help_lists_the_datasink_options():
    done = subprocess.run([INSTRUMENT, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for flag in ("--exporter_datasink_location", "--exporter_datasink_profile", "--exporter_datasink_s3_endpoint_url"):
        assert flag in done.stdout


def test_opentelemetry_instrument_flag_sets_the_location(tmp_path, read_tables):
    location = str(tmp_path / "from-flag")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    done = subprocess.run(
        [
            INSTRUMENT,
            "--traces_exporter",
            "datasink",
            "--exporter_datasink_location",
            location,
            sys.executable,
            str(EXAMPLES / "backfill_job.py"),
            "--start",
            "2026-02-01",
            "--end",
            "2026-02-01",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert [r["job_name"] for r in read_tables(location).rows("job_runs")] == ["ingest_orders"]


@pytest.mark.parametrize(
    ("profile", "cause"),
    [("airflw", "unknown mapping profile 'airflw'"), ("nope.toml", "cannot read mapping file nope.toml")],
)
def test_a_bad_profile_is_one_logged_line_and_the_job_runs_with_its_other_exporters(tmp_path, profile, cause):
    # Raised to the SDK, it was two 30-line tracebacks and no tracing at all: the console exporter exported nothing.
    done = _instrument(
        "backfill_job.py",
        ["--start", "2026-01-01", "--end", "2026-01-01"],
        {
            "OTEL_TRACES_EXPORTER": "console,datasink",
            "OTEL_EXPORTER_DATASINK_LOCATION": str(tmp_path / "t"),
            "OTEL_EXPORTER_DATASINK_PROFILE": profile,
        },
    )
    assert done.returncode == 0
    [line] = done.stderr.splitlines()
    assert line.startswith("OTEL_TRACES_EXPORTER=datasink: no span is written: ") and cause in line, line
    assert '"job.name": "ingest_orders"' in done.stdout  # the console exporter's span
    assert not (tmp_path / "t").exists()
