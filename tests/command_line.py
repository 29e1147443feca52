"""``otel-datasink`` run as a user runs it: the console script in a process of its own, without the OTEL_
settings of the test's environment, and the one-line failure every command ends with."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXIT_FAILURE = 2


def command(*args: str) -> list[str]:
    """The ``otel-datasink`` console script of this environment (beside the interpreter, else on PATH; the module
    when there is none) with ``args``."""
    script = shutil.which("otel-datasink", path=str(Path(sys.executable).parent)) or shutil.which("otel-datasink")
    return [script, *args] if script else [sys.executable, "-m", "otel_datasink.cli", *args]


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without any OTEL_ setting, plus ``variables``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, **variables}


def cli(*args: str, **variables: str) -> subprocess.CompletedProcess:
    """Runs ``otel-datasink args...``; the demo's writes give up after 2 s instead of 30 (a failing store)."""
    env = environment(OTEL_EXPORTER_DATASINK_TIMEOUT="2000", **variables)
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=120, env=env)


def assert_one_line_failure(done: subprocess.CompletedProcess, name: str, *causes: str) -> str:
    """The run failed with exit status 2 and exactly one stderr line naming the command and each cause."""
    assert done.returncode == EXIT_FAILURE, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"otel-datasink {name}: "), lines[0]
    for cause in causes:
        assert cause in lines[0], lines[0]
    return lines[0]
