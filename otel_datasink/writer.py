"""Rows to Hive-partitioned Parquet objects on any fsspec location, whole or not at all.

Each :meth:`Writer.write` puts one file per table per ``dt`` partition; :meth:`Writer.write_files` does the same
for rows already converted to Arrow tables (the collector converts each request's rows as they arrive). Where files
go and what they are named is the location's (:mod:`otel_datasink.location`); this module batches and puts. A file
is encoded in memory and put in one request (S3 PUT is atomic) or, on local disk, written beside its final name
and renamed, so readers never see a partial Parquet file. Transient store errors are retried with jittered
exponential backoff (:class:`Backoff`, the one retry policy of every write) until a deadline; a ``stop`` event
(shutdown) cuts the backoff, and a request in flight, short.

A Writer used in a forked child opens the location again: the parent's async filesystem (s3fs) belongs to an
event loop thread that does not exist in the child.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import io
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from otel_datasink.config import Options
from otel_datasink.location import by_partition, file_name, open_location, table_path, temporary_name
from otel_datasink.schema import TABLES, Rows, to_arrow

_logger = logging.getLogger(__name__)

# Errors that a retry cannot mend: bad arguments, missing bucket, denied access, a file where a folder must be.
_PERMANENT_ERRORS = (
    ValueError,
    TypeError,
    PermissionError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    NotImplementedError,
)
_PERMANENT_ERRNOS = frozenset({errno.EROFS})
"""OSErrors by errno that no retry within one write mends (a read-only filesystem); the next flush tries again."""
_PERMANENT_RUNTIME_ERRORS = ("cannot schedule new futures after", "not fork-safe")
"""RuntimeError messages (raised as such or wrapped, e.g. in botocore's HTTPClientError) that no retry mends:
past ``concurrent.futures``' exit hook the event loop cannot resolve a host or read a file any more ("... after
interpreter shutdown", or "... after shutdown" once the loop's executor is shut down), and a filesystem object
used in a process forked after it was opened stays unusable there."""
_POLL = 0.05
"""Seconds between checks of the stop event while a request is in flight."""


Files = Iterable[tuple[tuple[str, str], Sequence[pa.Table]]]
"""Files to write: each (table, ``dt`` partition) with the Arrow tables (of that table's schema) that make it up."""


def arrow_parts(rows: Rows) -> Iterator[tuple[tuple[str, str], pa.Table]]:
    """Rows of the tables as Arrow tables, one per table and ``dt`` partition, each with its (table, dt).

    One at a time: a write puts each file before converting the next, so that rows that cannot be converted (an
    instant no timestamp holds) fail their own file, not the files before them.
    """
    for table, table_rows in rows.items():
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        for dt, part in by_partition(table_rows):
            yield (table, dt), to_arrow(table, part)


class Backoff:
    """Jittered exponential delays between attempts: the one retry policy of the writes.

    :meth:`Writer.put` draws its delays from one, and so does a caller that retries whole writes (the collector's
    writer thread keeps a batch and tries it again): passing its Backoff to :meth:`Writer.write_files` makes
    both one sequence of delays, growing with consecutive failures, back to the start after any success.
    """

    INITIAL = 0.5
    MAXIMUM = 8.0

    def __init__(self, initial: float = INITIAL, maximum: float = MAXIMUM) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def delay(self) -> float:
        """The delay before the next attempt (±20%, so that many clients do not retry in step); grows."""
        delay = self._next * random.uniform(0.8, 1.2)
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        """Back to the initial delay: an attempt succeeded."""
        self._next = self.initial


class WriteError(Exception):
    """A write that did not complete: the store refused it for good (bad path, missing bucket, denied access), or
    kept failing until the deadline or the stop event."""


class Writer:
    """Writes rows of the tables as Parquet files under one location."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._fs, self.root = open_location(options)
        self._pid = os.getpid()
        self._local = isinstance(self._fs, LocalFileSystem)
        self._inherited: list[fsspec.AbstractFileSystem] = []
        """Filesystems opened before a fork, kept (never closed) in the child: see :meth:`_reopen`."""

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The location's filesystem, opened again in a process forked since it was opened."""
        if self._pid != os.getpid():
            self._reopen()
        return self._fs

    def _reopen(self) -> None:
        # fsspec clears its instance cache in a forked child, so this is a new instance on the child's own event
        # loop thread. The parent's is left alone: its sockets are the parent's too (closing a TLS one would send
        # close_notify on the parent's connection), so it is kept from collection and its finalizer, which would
        # try the parent's event loop (absent here) for a second at the child's exit, is detached.
        inherited = self._fs
        _detach_finalizers(inherited)
        self._inherited.append(inherited)
        self._fs, self.root = open_location(self.options)
        self._pid = os.getpid()

    def path(self, table: str, dt: str | None = None) -> str:
        """The folder of a table, or of one of its partitions (:func:`~otel_datasink.location.table_path`)."""
        return table_path(self.root, table, dt)

    def parquet_options(self) -> dict[str, Any]:
        """Options of every Parquet file written here (compaction writes its files with them too)."""
        return {
            "compression": self.options.compression,
            "coerce_timestamps": "ms",
            "use_deprecated_int96_timestamps": False,
            # Measured (benchmarks/bench_core.py): with zstd, plain encoding writes smaller files than
            # dictionary encoding at every size from 512 to 20k rows, and 30% faster for a flush's file.
            "use_dictionary": False,
        }

    def encode(self, table: str, rows: list[dict]) -> bytes:
        """One Parquet file's bytes for rows of ``table``."""
        return self.encode_tables([to_arrow(table, rows)])

    def encode_tables(self, tables: Sequence[pa.Table]) -> bytes:
        """One Parquet file's bytes for Arrow tables of one table's schema, in order: every file is encoded here."""
        buffer = io.BytesIO()
        pq.write_table(tables[0] if len(tables) == 1 else pa.concat_tables(tables), buffer, **self.parquet_options())
        return buffer.getvalue()

    def write(
        self,
        rows: Rows,
        *,
        deadline: float | None = None,
        stop: threading.Event | None = None,
        backoff: Backoff | None = None,
    ) -> list[str]:
        """Writes the rows of each table, one file per ``dt`` partition; returns the paths written.

        Raises ValueError for a table not in the schema, else as :meth:`write_files`.
        """
        files = ((key, [part]) for key, part in arrow_parts(rows))
        return self.write_files(files, deadline=deadline, stop=stop, backoff=backoff)

    def write_files(
        self,
        files: Files,
        *,
        deadline: float | None = None,
        stop: threading.Event | None = None,
        backoff: Backoff | None = None,
    ) -> list[str]:
        """Writes each file of ``files`` (its Arrow tables, in order), in order; returns the paths written.

        Raises :class:`WriteError` when the store keeps failing until ``deadline`` (a ``time.monotonic()``
        value; default: now + the timeout option) or ``stop`` is set. Files already put stay: the views
        collapse the duplicates a retry of the whole batch would add. ``backoff``: the delays of a caller that
        retries the whole write (see :class:`Backoff`); by default each write starts afresh.
        """
        deadline = time.monotonic() + self.options.timeout if deadline is None else deadline
        backoff = Backoff() if backoff is None else backoff
        written = []
        for (table, dt), tables in files:
            if not tables:
                continue
            path = f"{self.path(table, dt)}/{file_name()}"
            self.put(path, self.encode_tables(tables), deadline=deadline, stop=stop, backoff=backoff)
            written.append(path)
        return written

    def put(
        self,
        path: str,
        data: bytes,
        *,
        deadline: float,
        stop: threading.Event | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        """Puts one object whole, retrying transient errors with ``backoff``'s delays until ``deadline``; ``stop``
        cuts the backoff and, on an async filesystem (S3), the request in flight."""
        backoff = Backoff() if backoff is None else backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                self._put_once(path, data, deadline=deadline, stop=stop)
                backoff.reset()
                return
            except _PERMANENT_ERRORS as error:
                raise WriteError(f"cannot write {path}: {error}") from error
            except Exception as error:  # noqa: BLE001 - stores raise many kinds of transient errors
                if _is_permanent(error):
                    raise WriteError(f"cannot write {path}: {error!r}") from error
                delay = backoff.delay()
                if time.monotonic() + delay >= deadline or (stop is not None and stop.is_set()):
                    raise WriteError(f"cannot write {path} after {attempt} attempt(s): {error!r}") from error
                _logger.info("retrying write of %s in %.1fs: %r", path, delay, error)
                if stop is not None:
                    if stop.wait(delay):
                        raise WriteError(f"shutdown while retrying {path}: {error!r}") from error
                else:
                    time.sleep(delay)

    def _put_once(self, path: str, data: bytes, *, deadline: float, stop: threading.Event | None) -> None:
        fs = self.fs
        if self._local:
            folder, name = path.rsplit("/", 1)
            fs.makedirs(folder, exist_ok=True)
            temporary = f"{folder}/{temporary_name(name)}"
            try:
                with open(temporary, "wb") as out:
                    out.write(data)
                os.replace(temporary, path)  # atomic: readers see the whole file or none
            except BaseException:
                # Only a failed write leaves the temporary behind; a successful one costs no extra check.
                if os.path.exists(temporary):
                    os.remove(temporary)
                raise
        elif getattr(fs, "async_impl", False):
            # The async API of fsspec's AsyncFileSystem (s3fs): its methods are the underscored ones.
            _run_until(fs.loop, fs._pipe_file(path, data), deadline=deadline, stop=stop)
        else:
            fs.pipe_file(path, data)


def _run_until(
    loop: asyncio.AbstractEventLoop, coroutine: Any, *, deadline: float, stop: threading.Event | None
) -> None:
    """Runs ``coroutine`` on the filesystem's event loop thread, cancelling it at ``deadline`` or on ``stop``.

    fsspec's own sync wrapper only takes a timeout; this also ends a request in flight on shutdown. A hard bound
    matters: an endpoint that accepts the connection and never answers (aiohttp then waits for
    "100 Continue" with no socket timeout) would hold it forever.
    """
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    while not future.done():
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (stop is not None and stop.is_set()):
            # Cancels the task on the loop: the connection is dropped, not left hanging. A request that has just
            # finished cannot be cancelled any more: its own outcome stands.
            if future.cancel():
                raise TimeoutError("deadline passed with the request in flight" if remaining <= 0 else "stopped")
            break
        concurrent.futures.wait([future], timeout=min(remaining, _POLL) if stop is not None else remaining)
    future.result()  # raises the request's own error


def _detach_finalizers(obj: object) -> None:
    """Detaches the ``weakref.finalize`` callbacks registered on ``obj`` (s3fs closes its session with one)."""
    registry = getattr(weakref.finalize, "_registry", None)  # private: without it, nothing is detached
    if not isinstance(registry, dict):
        return
    for finalizer in list(registry):
        info = finalizer.peek()
        if info is not None and info[0] is obj:
            finalizer.detach()


def _is_permanent(error: BaseException) -> bool:
    """Whether ``error``, or an error it wraps, is a RuntimeError of :data:`_PERMANENT_RUNTIME_ERRORS` or an
    OSError of :data:`_PERMANENT_ERRNOS`."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 10:
        if isinstance(current, RuntimeError) and any(text in str(current) for text in _PERMANENT_RUNTIME_ERRORS):
            return True
        if isinstance(current, OSError) and current.errno in _PERMANENT_ERRNOS:
            return True
        # botocore's HTTPClientError keeps the original in its kwargs, not always as the cause.
        kwargs = getattr(current, "kwargs", None)
        wrapped = kwargs.get("error") if isinstance(kwargs, dict) else None
        current = wrapped if isinstance(wrapped, BaseException) else (current.__cause__ or current.__context__)
        seen += 1
    return False
