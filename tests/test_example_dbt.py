"""The dbt example (``examples/dbt_openlineage``) run by the real ``dbt-ol`` against the real collector process.

dbt-core, dbt-duckdb and openlineage-dbt install into a virtual environment of their own (their dependencies
are not the project's), made from the example's ``requirements.txt`` once and kept in the temporary directory
under a name keyed by that file and this Python, so a second run starts at once. A clean install took 17 s on
a 2-core CI machine (PyPI reachable, no pip cache), so the test runs by default; ``OTEL_DATASINK_DBT_VENV``
names a ready environment to use instead, and ``OTEL_DATASINK_SKIP_DBT_EXAMPLE=1`` skips it (offline).

``dbt-ol`` runs the example's three models: ``orders`` and ``daily_revenue`` build, ``order_status`` fails at
run time, so dbt exits with status 1. The OpenLineage events it sends to ``POST /api/v1/lineage`` become
job_runs rows (the dbt run, each model) and dataset_status rows (the models' tables).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

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
    # A first run installs dbt (17 s measured, more on a slow mirror); later runs reuse the environment.
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


class Collector:
    """``otel-datasink collector`` as a user starts it, on free ports; its output goes to ``log``."""

    def __init__(self, location: str, tmp_path: Path) -> None:
        self.port = free_port()
        self.log = tmp_path / "collector.log"
        script = Path(sys.executable).with_name("otel-datasink")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "otel_datasink.cli"]
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [*command, "collector", "--location", location]
                + ["--http", f"127.0.0.1:{self.port}", "--grpc", f"127.0.0.1:{free_port()}"]
                + ["--spool-dir", str(tmp_path / "spool"), "--flush-age", "0.2"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not self._healthy():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "collector did not start:\n" + self.log.read_text()
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> int:
        """SIGTERM (flushes what it holds); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def run_dbt_ol(venv: Path, project: Path, *args: str) -> subprocess.CompletedProcess:
    """``dbt-ol run ...`` in ``project`` as a user runs it, with only the venv's ``bin`` put first on PATH (dbt-ol
    starts ``dbt`` from there) and no OpenLineage or dbt setting inherited from this environment."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENLINEAGE", "DBT_")) and name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env = {**inherited, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "DO_NOT_TRACK": "1"}
    return subprocess.run(
        [str(venv / "bin" / "dbt-ol"), "run", *args],
        cwd=project,
        env=env,
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


@pytest.mark.parametrize(
    ("flags", "model_job"),
    [
        # Events sent while dbt runs, from its structured logs: models named by dbt's unique id, error text sent.
        (("--consume-structured-logs",), "model.shop.{}"),
        # The default: events sent once dbt has ended, from target/run_results.json; no error text is sent.
        ((), "shop.main.shop.{}"),
    ],
    ids=["structured-logs", "run-results"],
)
def test_dbt_ol_run_reaches_the_collector_with_the_failed_model(venv, tmp_path, flags, model_job):
    location = str(tmp_path / "datasink")
    collector = Collector(location, tmp_path)
    try:
        project = example_project(tmp_path, collector.url)
        started = time.monotonic()
        dbt = run_dbt_ol(venv, project, *flags)
        print(f"dbt-ol run {' '.join(flags)}: {time.monotonic() - started:.1f} s")
    finally:
        exit_code = collector.stop()
    output = f"dbt-ol exited {dbt.returncode}\n{dbt.stdout}\n{dbt.stderr}\ncollector:\n{collector.log.read_text()}"
    assert exit_code == 0, output
    # dbt ran all three models, and order_status failed at run time, not at parse.
    assert dbt.returncode == 1, output
    assert "PASS=2 WARN=0 ERROR=1" in dbt.stdout, output
    assert "Could not convert string 'n/a' to INT32" in dbt.stdout, output
    # Every event reached the collector (the HTTP transport logs a failed POST and goes on).
    assert "Emitted 0 OpenLineage events" not in dbt.stdout, output
    assert "failed to emit" not in dbt.stdout + dbt.stderr, output

    runs = {row["job_name"]: row for row in query(location, "select * from job_runs_latest")}
    dbt_run = runs["dbt-run-shop"]
    assert dbt_run["status"] == "FAILED", runs
    orders, daily_revenue, order_status = (runs[model_job.format(name)] for name in MODELS)
    assert (orders["status"], daily_revenue["status"], order_status["status"]) == ("SUCCESS", "SUCCESS", "FAILED")
    if flags:
        assert "Could not convert string 'n/a' to INT32" in order_status["error_message"], order_status
        assert "failed" in dbt_run["error_message"], dbt_run
    for model in (orders, daily_revenue, order_status):
        assert model["start_time"] is not None and model["end_time"] is not None, model
        assert dbt_run["start_time"] <= model["start_time"] <= model["end_time"] <= dbt_run["end_time"], model

    datasets = {row["dataset"]: row for row in query(location, "select * from dataset_status_latest")}
    for model in ("orders", "daily_revenue"):
        [dataset] = [row for name, row in datasets.items() if name.endswith(f"shop.main.{model}")]
        assert dataset["last_status"] == "SUCCESS", datasets
        assert dataset["last_success_at"] is not None, datasets
