"""The dbt example (``examples/dbt_openlineage``) run by the real ``dbt-ol`` against the real collector process.

dbt-core, dbt-duckdb and openlineage-dbt install into a virtual environment of their own (their dependencies
are not the project's), made from the example's ``requirements.txt`` once and kept in the temporary directory
under a name keyed by that file and this Python, so a second run starts at once. A clean install (PyPI, no pip
cache) took 17 s on an idle 2-core machine and 46 s on a busy one (load 4), so the test runs by default;
``OTEL_DATASINK_DBT_VENV`` names a ready environment to use instead, and ``OTEL_DATASINK_SKIP_DBT_EXAMPLE=1``
skips it (offline).

``dbt-ol`` runs the example's three models: ``orders`` and ``daily_revenue`` build, ``order_status`` fails at
run time, so dbt exits with status 1. The OpenLineage events it sends to ``POST /api/v1/lineage`` become
job_runs rows (the dbt run, each model) and dataset_status rows (the models' tables).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from collectors import CollectorProcess
from command_line import command
from network import free_port

from otel_datasink.local import connect

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "dbt_openlineage"
REQUIREMENTS = EXAMPLE / "requirements.txt"
DEFAULT_COLLECTOR_URL = "http://127.0.0.1:4318"
MODELS = ("orders", "daily_revenue", "order_status")

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("OTEL_DATASINK_SKIP_DBT_EXAMPLE", "") not in ("", "0"),
        reason="OTEL_DATASINK_SKIP_DBT_EXAMPLE is set (the test installs dbt from PyPI)",
    ),
    # A first run installs dbt (17 to 46 s measured); later runs reuse the environment.
    pytest.mark.timeout(600),
]


def _venv_key() -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(f"{sys.version_info[:3]} {sys.implementation.name} {sys.base_prefix}".encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (two test runs at once build one environment, not two half ones)."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def dbt_venv() -> Path:
    """A virtual environment with the example's requirements: the given one, the cached one, or a new one."""
    if given := os.environ.get("OTEL_DATASINK_DBT_VENV"):
        return Path(given)
    venv = Path(tempfile.gettempdir()) / f"otel-datasink-dbt-venv-{_venv_key()}"
    done = venv / "installed-requirements.txt"
    with _locked(venv.with_suffix(".lock")):
        if done.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # an install that died half-way
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        install = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
            capture_output=True,
            text=True,
            timeout=540,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
        assert install.returncode == 0, f"pip install -r {REQUIREMENTS} failed:\n{install.stdout}\n{install.stderr}"
        shutil.copyfile(REQUIREMENTS, done)
        print(f"dbt environment installed in {time.monotonic() - started:.1f} s: {venv}")
    return venv


def run_dbt_ol(venv: Path, project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``dbt-ol run ...`` in ``project`` as a user runs it, with only the venv's ``bin`` put first on PATH (dbt-ol
    starts ``dbt`` from there) and no OpenLineage or dbt setting inherited from this environment."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENLINEAGE", "DBT_")) and name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    path = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        [str(venv / "bin" / "dbt-ol"), "run", *args],
        cwd=project,
        env={**inherited, "PATH": path, "DO_NOT_TRACK": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def venv() -> Path:
    return dbt_venv()


def example_project(tmp_path: Path, collector_url: str) -> Path:
    """A copy of the example whose openlineage.yml names the test's collector instead of the default port."""
    project = tmp_path / "dbt_openlineage"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*", ".user.yml"))
    config = project / "openlineage.yml"
    text = config.read_text()
    assert DEFAULT_COLLECTOR_URL in text
    config.write_text(text.replace(DEFAULT_COLLECTOR_URL, collector_url))
    return project


def query(location: str, sql: str) -> list[dict]:
    with connect(location) as con:
        result = con.execute(sql)
        names = [column[0] for column in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


# The two ways dbt-ol reports a run: the flags, and how it names a model's job.
STRUCTURED_LOGS = (("--consume-structured-logs",), "model.shop.{}")
"""Events sent while dbt runs, read from its structured logs: models named by dbt's unique id, FAIL events carry
dbt's error message, and each SQL statement of a model is a child job of its own (``model.shop.orders.sql.1``)."""
RUN_RESULTS = ((), "shop.main.shop.{}")
"""The default: events sent once dbt has ended, read from ``target/run_results.json``; no error message is sent,
and the failed model's FAIL event names no output."""

DUCKDB = "duckdb://target/shop.duckdb"
"""The datasets' namespace: dbt-duckdb's database file, as profiles.yml gives it."""


def assert_dbt_ran_with_one_failure(dbt: subprocess.CompletedProcess, output: str) -> None:
    # dbt ran all three models, and order_status failed at run time (a parse error would run none).
    assert dbt.returncode == 1, output
    assert "PASS=2 WARN=0 ERROR=1" in dbt.stdout, output
    assert "Could not convert string 'n/a' to INT32" in dbt.stdout, output
    # Every event was emitted without error (the HTTP transport logs a refused POST and goes on).
    assert "Emitted 0 OpenLineage events" not in dbt.stdout, output
    assert "failed to emit" not in dbt.stdout + dbt.stderr, output


def assert_rows(location: str, flags: tuple[str, ...], model_job: str) -> None:
    """job_runs_latest has the dbt invocation and each model; dataset_status_latest the models' tables."""
    runs = {row["job_name"]: row for row in query(location, "select * from job_runs_latest")}
    dbt_run = runs["dbt-run-shop"]
    orders, daily_revenue, order_status = (runs[model_job.format(name)] for name in MODELS)
    statuses = [run["status"] for run in (dbt_run, orders, daily_revenue, order_status)]
    assert statuses == ["FAILED", "SUCCESS", "SUCCESS", "FAILED"], runs
    if flags:
        assert order_status["error_message"].startswith("Runtime Error in model order_status"), order_status
        assert "Could not convert string 'n/a' to INT32" in order_status["error_message"], order_status
        assert dbt_run["error_message"].startswith("Command `dbt run` failed"), dbt_run
    else:
        assert not order_status["error_message"], order_status  # dbt-ol sends none in this mode
    for model in (orders, daily_revenue, order_status):
        # One trace per dbt invocation, each model a child of the dbt run.
        assert (model["trace_id"], model["parent_span_id"]) == (dbt_run["trace_id"], dbt_run["span_id"]), model
        assert model["service_name"] == "dbt" and model["job_type"] == "batch", model
        assert dbt_run["start_time"] <= model["start_time"] <= model["end_time"] <= dbt_run["end_time"], model
        assert model["attributes"]["openlineage.job.type"] == "MODEL", model
    assert orders["dataset"] == f"{DUCKDB}/shop.main.orders", orders

    datasets = {row["dataset"]: row for row in query(location, "select * from dataset_status_latest")}
    for model in ("orders", "daily_revenue"):
        dataset = datasets[f"{DUCKDB}/shop.main.{model}"]
        assert (dataset["last_status"], dataset["last_job_name"]) == ("SUCCESS", model_job.format(model)), dataset
        assert dataset["last_success_at"] is not None and not dataset["is_stale"], dataset
    failed = datasets.get(f"{DUCKDB}/shop.main.order_status")
    if flags:  # the failed model's FAIL event names its output: a failed update, the table never built
        assert failed is not None and (failed["last_status"], failed["last_success_at"]) == ("FAILED", None), failed
    else:
        assert failed is None, datasets
    assert len(datasets) == (3 if flags else 2), datasets


@pytest.mark.parametrize(("flags", "model_job"), [STRUCTURED_LOGS, RUN_RESULTS], ids=["structured-logs", "run-results"])
def test_dbt_ol_run_reaches_the_collector_with_the_failed_model(venv, tmp_path, flags, model_job):
    location = str(tmp_path / "datasink")
    grpc = ("--grpc", f"127.0.0.1:{free_port()}")
    collector = CollectorProcess(location, tmp_path / "spool", tmp_path / "collector.log", *grpc, "--flush-age", "0.2")
    try:
        project = example_project(tmp_path, collector.url)
        started = time.monotonic()
        dbt = run_dbt_ol(venv, project, *flags)
        print(f"dbt-ol run {' '.join(flags)}: {time.monotonic() - started:.1f} s")
    finally:
        exit_code = collector.stop()
    output = f"dbt-ol exited {dbt.returncode}\n{dbt.stdout}\n{dbt.stderr}\ncollector:\n{collector.log.read_text()}"
    assert exit_code == 0, output
    assert_dbt_ran_with_one_failure(dbt, output)
    assert_rows(location, flags, model_job)


def test_dbt_ol_events_in_a_file_replay_to_the_same_rows(venv, tmp_path):
    """The file transport (named by OPENLINEAGE_CONFIG, which wins over the project's openlineage.yml), then
    ``otel-datasink replay`` of what it wrote: the rows the collector makes."""
    project = example_project(tmp_path, "http://127.0.0.1:9")  # nothing listens there: only the file is used
    events = tmp_path / "events.jsonl"
    config = tmp_path / "file-transport.yml"
    config.write_text(f"transport:\n  type: file\n  log_file_path: {events}\n  append: true\n")
    dbt = run_dbt_ol(venv, project, *STRUCTURED_LOGS[0], env={"OPENLINEAGE_CONFIG": str(config)})
    assert_dbt_ran_with_one_failure(dbt, f"dbt-ol exited {dbt.returncode}\n{dbt.stdout}\n{dbt.stderr}")
    assert len(events.read_text().splitlines()) >= 8

    location = str(tmp_path / "datasink")
    replay = subprocess.run(
        command("replay", "--location", location, "--no-progress", str(events)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert_rows(location, *STRUCTURED_LOGS)
