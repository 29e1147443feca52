"""Shared fixtures: a real S3 API (moto's server, in its own process on 127.0.0.1) and clean locations."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import errno
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import duckdb
import fsspec
import pyarrow.dataset as ds
import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_MS_RDONLY, _MS_REMOUNT, _MNT_DETACH = 1, 32, 2


def _mount(source: bytes, path: Path, flags: int, data: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source, os.fsencode(path), b"tmpfs", flags, data.encode()) != 0:
        code = ctypes.get_errno()
        if code == errno.EPERM:
            pytest.skip("mounting a tmpfs is not permitted here (needs root or CAP_SYS_ADMIN)")
        raise OSError(code, os.strerror(code), str(path))


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m", *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (created) for the duration: a real small or read-only disk (as
    root, a chmod stops no write). Skipped only where mounting is denied; never left mounted after the test."""
    path.mkdir(exist_ok=True)
    _mount(b"tmpfs", path, _MS_RDONLY if read_only else 0, f"size={size}")
    try:
        yield path
    finally:
        # Lazily if a file is still open, so that no mount outlives the test.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.umount2(os.fsencode(path), 0) != 0:
            libc.umount2(os.fsencode(path), _MNT_DETACH)


def remount_read_only(path: Path, size: str = "1m") -> None:
    """Makes a :func:`tmpfs` read-only, with what it holds."""
    _mount(b"tmpfs", path, _MS_REMOUNT | _MS_RDONLY, f"size={size}")


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


def _plain(value):
    # Map columns come back as [(k, v)] from pyarrow and as dicts from DuckDB; dt as str or date.
    if isinstance(value, list) and all(isinstance(item, tuple) and len(item) == 2 for item in value):
        return dict(value)
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


class TableReader:
    """Reads a table back as users do, with pyarrow and with DuckDB (``read_parquet``, Hive partitions)."""

    def __init__(self, location: str, endpoint_url: str | None = None) -> None:
        self.location = location.rstrip("/")
        # A fresh s3fs instance: a cached one could answer listings from before the writes.
        self.storage_options = (
            {"client_kwargs": {"endpoint_url": endpoint_url}, "skip_instance_cache": True} if endpoint_url else {}
        )

    def filesystem(self):
        fs, _ = fsspec.core.url_to_fs(self.location, **self.storage_options)
        return fs

    def arrow(self, table: str) -> list[dict]:
        fs, root = fsspec.core.url_to_fs(self.location, **self.storage_options)
        data = ds.dataset(f"{root}/{table}", filesystem=fs, format="parquet", partitioning="hive").to_table()
        return [{k: _plain(v) for k, v in row.items()} for row in data.to_pylist()]

    def duckdb(self, table: str) -> list[dict]:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        if self.location.startswith("s3://"):
            con.register_filesystem(self.filesystem())
        relation = con.sql(
            f"SELECT * FROM read_parquet('{self.location}/{table}/dt=*/*.parquet', hive_partitioning = true)"
        )
        names = relation.columns
        return [{k: _plain(v) for k, v in zip(names, row, strict=True)} for row in relation.fetchall()]

    def rows(self, table: str) -> list[dict]:
        """The table's rows; pyarrow and DuckDB must read the same values, column by column."""
        by_arrow = sorted(self.arrow(table), key=_row_key)
        by_duckdb = sorted(self.duckdb(table), key=_row_key)
        assert len(by_arrow) == len(by_duckdb)
        for arrow_row, duckdb_row in zip(by_arrow, by_duckdb, strict=True):
            assert arrow_row == duckdb_row
        return by_arrow


def _row_key(row: dict) -> str:
    return json.dumps(row, default=str, sort_keys=True)


@pytest.fixture
def read_tables() -> Callable[..., TableReader]:
    """``read_tables(location, endpoint_url=None)``: a :class:`TableReader` of a location."""
    return TableReader
