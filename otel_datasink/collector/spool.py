"""A write-ahead spool: acknowledged OTLP requests on local disk until their rows are in the store.

The spool is a folder of segment files, one per batch (:mod:`.batcher`). Each request of a batch is appended to
its segment as one frame (magic, kind, length, CRC-32, payload: the request body as received, decompressed) and
fsynced before the request is answered 200. A segment is removed only once its batch's rows are written; the
segments a crashed collector left behind are replayed when it starts again. A frame torn by a crash was never
acknowledged and is skipped, as is everything after it.

Appends and fsyncs run on one thread, so that the requests that arrive while an fsync runs share the next one
(group commit) and the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

_logger = logging.getLogger(__name__)

KIND_PROTOBUF = 1
"""A frame holding an ``ExportTraceServiceRequest`` in protobuf."""
KIND_JSON = 2
"""A frame holding an OTLP JSON request."""

_MAGIC = b"ODS1"
_HEADER = struct.Struct(">4sBII")  # magic, kind, payload length, CRC-32 of the payload
_SUFFIX = ".seg"


class SpoolLockedError(RuntimeError):
    """Another collector already uses the spool folder."""


class Segment:
    """One spool file: the frames of the requests of one batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        # Opened at once: a segment removed before its first frame is written must not be created again.
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._entry_synced = False

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_segment(path: Path) -> Iterator[tuple[int, bytes]]:
    """The (kind, payload) frames of a segment, up to the first torn or corrupt one."""
    data = path.read_bytes()
    offset = 0
    while offset + _HEADER.size <= len(data):
        magic, kind, length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start : start + length]
        if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            _logger.warning("spool segment %s: torn frame at byte %d skipped (never acknowledged)", path, offset)
            return
        yield kind, payload
        offset = start + length
    if offset != len(data):
        _logger.warning("spool segment %s: %d trailing bytes skipped", path, len(data) - offset)


class Spool:
    """The spool folder, locked for this process; appends through a group-commit thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.directory / "lock", "a+")  # noqa: SIM115 - held for the spool's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            self._lock_file.close()
            raise SpoolLockedError(f"spool {self.directory} is in use by another collector") from error
        self.leftover = sorted(self.directory.glob(f"*{_SUFFIX}"))
        """Segments of an earlier run, to replay before they are removed."""
        self._sizes: dict[Path, int] = {path: path.stat().st_size for path in self.leftover}
        self._ops: list[tuple] = []
        self._ops_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(name="otel-datasink-spool", target=self._run, daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Segments on disk whose rows are not yet written."""
        return len(self._sizes)

    @property
    def depth_bytes(self) -> int:
        """Bytes of the segments on disk whose rows are not yet written."""
        return sum(self._sizes.values())

    def new_segment(self) -> Segment:
        """A new, empty segment; its file is created at once (empty until its first frame)."""
        path = self.directory / f"{time.time_ns():020d}-{os.getpid()}{_SUFFIX}"
        self._sizes[path] = 0
        return Segment(path)

    def append(self, segment: Segment, kind: int, payload: bytes) -> asyncio.Future:
        """Appends a frame; the future (of the running loop) completes once the frame is fsynced."""
        future = asyncio.get_running_loop().create_future()
        frame = _HEADER.pack(_MAGIC, kind, len(payload), zlib.crc32(payload))
        segment.size += len(frame) + len(payload)
        self._submit(("append", segment, frame, payload, future))
        return future

    def seal(self, segment: Segment) -> None:
        """Closes a segment once its pending frames are fsynced: its batch takes no more requests."""
        self._submit(("seal", segment))

    def remove(self, path: Path) -> None:
        """Removes a segment whose rows are written (any thread)."""
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        self._sizes.pop(path, None)

    def close(self) -> None:
        """Finishes pending appends, stops the thread and releases the folder."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        self._lock_file.close()

    def _submit(self, op: tuple) -> None:
        with self._ops_lock:
            self._ops.append(op)
        self._wake.set()

    def _run(self) -> None:
        while True:
            # Once closing, no more waiting: drain what is queued, then stop.
            if not self._closing:
                self._wake.wait()
            self._wake.clear()
            with self._ops_lock:
                ops, self._ops = self._ops, []
            if ops:
                self._commit(ops)
            elif self._closing:
                return

    def _commit(self, ops: list[tuple]) -> None:
        # Write every frame, fsync each touched segment once, then answer all their requests.
        done: list[tuple[asyncio.Future, BaseException | None]] = []
        dirty: dict[Segment, list[asyncio.Future]] = {}
        for op in ops:
            if op[0] == "append":
                _, segment, frame, payload, future = op
                try:
                    _write_all(segment._fd, frame + payload)
                    dirty.setdefault(segment, []).append(future)
                except OSError as error:
                    done.append((future, error))
            else:
                segment = op[1]
                done += self._sync(segment, dirty.pop(segment, []))
                segment._close()
        for segment, futures in dirty.items():
            done += self._sync(segment, futures)
        if done:
            _resolve(done)

    def _sync(
        self, segment: Segment, futures: list[asyncio.Future]
    ) -> list[tuple[asyncio.Future, BaseException | None]]:
        if not futures:
            return []
        try:
            os.fsync(segment._fd)
            if not segment._entry_synced:
                # The file's directory entry must survive a crash as well as its content.
                directory = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
                segment._entry_synced = True
            if segment.path in self._sizes:
                self._sizes[segment.path] = segment.size
            return [(future, None) for future in futures]
        except OSError as error:
            _logger.error("cannot fsync spool segment %s: %s", segment.path, error)
            return [(future, error) for future in futures]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _resolve(done: list[tuple[asyncio.Future, BaseException | None]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for future, error in done:
        by_loop.setdefault(future.get_loop(), []).append((future, error))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, items)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


def _settle(items: list) -> None:
    for future, error in items:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
