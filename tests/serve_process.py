"""``otel-datasink serve`` in a process of its own, for the tests of the served page and of the server."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def serving(location: str, *flags: str) -> Iterator[str]:
    """``otel-datasink serve --location LOCATION FLAGS...`` as a process; yields the line it prints once serving,
    then stops it with SIGTERM, which must end it with exit status 0."""
    with serve_process(location, *flags) as (_, line):
        yield line


@contextlib.contextmanager
def serve_process(location: str, *flags: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """:func:`serving`, yielding the process too (to watch its threads)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "otel_datasink.cli", "serve", "--location", location, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()  # it ended before serving: its one line says why
        yield process, line
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
