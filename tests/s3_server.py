"""moto's S3 server in a process of its own on 127.0.0.1: the real S3 API the tests write to and read from."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import boto3
from network import free_port


class MotoServer:
    """moto's S3 server in a subprocess, which a test may stop and start again on the same port.

    ``environment``: variables set for the server besides this process's (``INITIAL_NO_AUTH_ACTION_COUNT=0``
    turns its credential checks on).
    """

    def __init__(self, environment: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._environment = {**os.environ, **environment} if environment else None
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self._environment,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        """Stops the server: the endpoint refuses connections until :meth:`start` (its buckets are gone)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")
