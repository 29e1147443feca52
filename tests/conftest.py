"""Shared fixtures: a real S3 API (moto's server, in its own process on 127.0.0.1) and clean locations."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """moto's S3 server in a subprocess, which a test may stop and start again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
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


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto S3 server for the session, with fake credentials in the environment."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    os.environ.pop("AWS_PROFILE", None)
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_location(moto_server: MotoServer) -> str:
    """``s3://<fresh bucket>/datasink`` on the moto server.

    Pass ``s3_endpoint_url=moto_server.endpoint_url`` to whatever writes or reads it.
    """
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/datasink"


@pytest.fixture
def local_location(tmp_path) -> str:
    """A fresh local folder for the tables."""
    return str(tmp_path / "datasink")
