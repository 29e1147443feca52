"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``) on 127.0.0.1, for the delivery tests.

``.ci/run`` installs the package when the binary is missing; elsewhere the tests using it are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from network import free_port

BINARY = "prometheus-alertmanager"
"""Debian's name for it (``/usr/bin/prometheus-alertmanager``); upstream's tarball calls it ``alertmanager``."""
CONFIG = """\
route:
  receiver: "null"
  group_wait: 1h
receivers:
  - name: "null"
"""
"""Every alert to a receiver that sends nothing: the tests read alerts back from the API, not from a receiver."""


def binary() -> str | None:
    """The Alertmanager executable, or ``None`` when it is not installed."""
    return shutil.which(BINARY) or shutil.which("alertmanager")


class Alertmanager:
    """A running Alertmanager, and its API read back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    @property
    def target(self) -> str:
        """Its ``--notify`` target."""
        return f"alertmanager://127.0.0.1:{self.port}"

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` with ``filters`` as query parameters (``active="true"``, ...)."""
        query = "&".join(f"{name}={value}" for name, value in filters.items())
        with urllib.request.urlopen(f"{self.base}/api/v2/alerts?{query}", timeout=5) as response:
            return json.loads(response.read())


def _wait_ready(process: subprocess.Popen[bytes], base: str, log: Path, within: float = 15.0) -> None:
    """Returns once ``/-/ready`` answers 200; a RuntimeError with the log if it exits or takes too long."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"alertmanager exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        time.sleep(0.1)
    raise RuntimeError(f"alertmanager not ready within {within:g} s:\n{log.read_text()}")


@contextlib.contextmanager
def running(directory: Path) -> Iterator[Alertmanager]:
    """An Alertmanager on a free port of 127.0.0.1, with its configuration and storage in ``directory``, no
    clustering (no gossip port, no peers), stopped on exit."""
    executable = binary()
    assert executable, "alertmanager is not installed"
    config = directory / "alertmanager.yml"
    config.write_text(CONFIG)
    port = free_port()
    log = directory / "alertmanager.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                executable,
                f"--config.file={config}",
                f"--storage.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        manager = Alertmanager(port)
        _wait_ready(process, manager.base, log)
        yield manager
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
