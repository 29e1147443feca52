"""A write-ahead spool: acknowledged OTLP and OpenLineage requests on local disk until their rows are in the store.

The spool is a folder of segment files, one per batch (:mod:`.batcher`). Each request of a batch is appended to
its segment as one frame (magic, kind: the body's :class:`~otel_datasink.formats.Format`, length, CRC-32, payload:
the request body as received, decompressed) and fsynced before the request is answered 200. A segment is removed
only once its batch's rows are written; the segments a crashed collector left behind are replayed when it starts
again.

A failed append (a full disk) must never leave bytes that later, acknowledged frames follow: the segment is
truncated back to its last whole frame, and when even that fails, or an fsync failed (after which the kernel may
have dropped written pages), the segment is *broken*: it takes no more frames, and the batcher starts a new one.
Replay still resynchronises past a torn or corrupt frame (segments of older versions, bit rot): see
:func:`read_segment`.

Appends and fsyncs run on one thread, so that the requests that arrive while an fsync runs share the next one
(group commit) and the event loop never waits on the disk. That thread never dies on an error: every request
waiting on it gets an answer.

One collector at a time uses a spool folder: it holds an exclusive lock on the folder itself, which deleting a
file cannot release (see :func:`_lock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from otel_datasink.formats import Format

_logger = logging.getLogger(__name__)

_KINDS = frozenset(Format)
_MAGIC = b"ODS1"
_HEADER = struct.Struct(">4sBII")  # magic, kind, payload length, CRC-32 of the payload
_SUFFIX = ".seg"


class SpoolLockedError(RuntimeError):
    """Another collector already uses the spool folder."""


def _lock(directory: Path) -> tuple[int, IO[str]]:
    """Locks a spool folder for this process: (a descriptor of the folder, its lock file), to hold until it stops.

    Raises :class:`SpoolLockedError` when another collector holds the folder.

    The lock that counts is an exclusive ``flock`` on the folder's own descriptor. A lock on a file in the folder
    is lost once the file is deleted (a tmp cleaner removing an old file), however long its descriptor is held:
    the next collector creates a new file of that name, locks it, and replays, appends to and removes this one's
    segments. No deletion of a file releases the folder's lock: its inode lives as long as the descriptor, a
    cleaner cannot remove the folder while it holds a segment (rmdir fails), and systemd-tmpfiles leaves alone a
    folder it cannot lock, segments and all.
    The file ``lock`` is locked as well, for collectors of earlier versions, which lock only it.
    """
    with contextlib.ExitStack() as undo:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        undo.callback(os.close, fd)
        lock_file = undo.enter_context(open(directory / "lock", "a+"))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise SpoolLockedError(f"spool {directory} is in use by another collector") from error
        undo.pop_all()  # held until Spool.close
    return fd, lock_file


class Segment:
    """One spool file: the frames of the requests of one batch.

    The loop thread appends (``frames`` counts them: the next frame's index); the spool thread writes them and
    records which failed. Once the segment is sealed and every frame's fate is known, ``settled`` is set: only
    then may its batch be written, without the rows of the ``failed`` frames.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.frames = 0
        """Frames appended so far: the index of the next one (loop thread)."""
        self.failed: set[int] = set()
        """Indexes of the frames whose request was answered with an error (spool thread)."""
        self.broken: str | None = None
        """Why the segment takes no more frames (a failed fsync or truncate), or None (spool thread)."""
        self.settled = threading.Event()
        """Set once the segment is sealed and ``failed`` is final."""
        self.end = 0
        """Bytes of whole frames written (spool thread): where a failed append is truncated back to."""
        self.synced = 0
        """Bytes fsynced (spool thread)."""
        self._fd: int | None = fd
        self._entry_synced = False

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def read_segment(path: Path) -> Iterator[tuple[int, bytes]]:
    """The (kind, payload) frames of a segment that check, resynchronising past torn or corrupt bytes.

    After a frame that does not check, the bytes are scanned for the next offset where a whole frame checks
    (magic, known kind, non-empty payload within the file, CRC-32), and reading goes on from there. Valid frames
    are skipped by their length, never scanned, so a request whose payload happens to contain a frame cannot
    produce a false one; only the bytes of a frame that already failed its check are scanned. A false match there
    needs 64 bits of header and checksum to agree by chance (about 1 in 10^18 per offset) or a client that put a
    whole frame into its own request, and then yields a request that client could have sent anyway.
    """
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        frame = _frame_at(data, offset)
        if frame is None:
            resumed = _resync(data, offset + 1)
            if resumed is None:
                _logger.warning(
                    "spool segment %s: torn frame of %d bytes at byte %d skipped (never acknowledged)",
                    path,
                    len(data) - offset,
                    offset,
                )
                return
            _logger.warning(
                "spool segment %s: %d corrupt bytes at byte %d skipped; valid frames again from byte %d",
                path,
                resumed - offset,
                offset,
                resumed,
            )
            offset = resumed
            continue
        kind, start, end = frame
        yield kind, data[start:end]
        offset = end


def _frame_at(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """(kind, payload start, payload end) of a frame at ``offset`` that checks, else None."""
    if offset + _HEADER.size > len(data):
        return None
    magic, kind, length, crc = _HEADER.unpack_from(data, offset)
    start = offset + _HEADER.size
    end = start + length
    # The collector spools only requests with rows: an empty payload is no request (and has CRC 0, easy to fake).
    if magic != _MAGIC or kind not in _KINDS or length == 0 or end > len(data):
        return None
    if zlib.crc32(memoryview(data)[start:end]) != crc:
        return None
    return kind, start, end


def _resync(data: bytes, offset: int) -> int | None:
    """The first offset from ``offset`` on where a whole frame checks, or None."""
    while (found := data.find(_MAGIC, offset)) != -1:
        if _frame_at(data, found) is not None:
            return found
        offset = found + 1
    return None


class Spool:
    """The spool folder, locked for this process; appends through a group-commit thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._directory_fd, self._lock_file = _lock(self.directory)
        self.leftover = sorted(self.directory.glob(f"*{_SUFFIX}"))
        """Segments of an earlier run, to replay before they are removed."""
        self.errors = 0
        """Failed creations, appends, fsyncs, truncates and closes of segments since start."""
        self.last_error: str | None = None
        """The cause of the last failed spool operation; None again after the next fsync that succeeds."""
        # Segments on disk -> their fsynced bytes; the loop, the spool and the writer threads all change it.
        self._sizes: dict[Path, int] = {path: path.stat().st_size for path in self.leftover}
        self._sizes_lock = threading.Lock()
        self._ops: list[tuple] = []
        self._ops_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(name="otel-datasink-spool", target=self._run, daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Segments on disk whose rows are not yet written (or whose removal failed)."""
        with self._sizes_lock:
            return len(self._sizes)

    @property
    def depth_bytes(self) -> int:
        """Bytes of the segments on disk whose rows are not yet written (or whose removal failed)."""
        with self._sizes_lock:
            return sum(self._sizes.values())

    def new_segment(self) -> Segment:
        """A new, empty segment, its file created at once; raises OSError (and records nothing) when it cannot."""
        path = self.directory / f"{time.time_ns():020d}-{os.getpid()}{_SUFFIX}"
        # Opened before it is counted: a creation that fails leaves no phantom segment behind. Opened at once, so
        # that a segment removed before its first frame is written is not created again. Created in the folder
        # this process holds locked, not by its path: should the folder be removed and made again (by another
        # collector), creations fail rather than add segments to another collector's spool.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            segment = Segment(path, os.open(path.name, flags, 0o600, dir_fd=self._directory_fd))
        except OSError as error:
            self._count_error(f"cannot create a spool segment: {error}")
            raise
        with self._sizes_lock:
            self._sizes[path] = 0
        return segment

    def append(self, segment: Segment, kind: int, payload: bytes) -> asyncio.Future:
        """Appends a frame as ``segment.frames`` (then counted); the future completes once the frame is fsynced.

        The future fails with OSError when the frame could not be written or fsynced: the request was not
        spooled, and its index is then in ``segment.failed``.
        """
        future = asyncio.get_running_loop().create_future()
        frame = _HEADER.pack(_MAGIC, kind, len(payload), zlib.crc32(payload))
        index = segment.frames
        segment.frames += 1
        self._submit(("append", segment, index, frame + payload, future))
        return future

    def seal(self, segment: Segment) -> None:
        """Closes a segment once its pending frames are fsynced: its batch takes no more requests."""
        self._submit(("seal", segment))

    def remove(self, path: Path) -> None:
        """Removes a segment whose rows are written (any thread); raises OSError (the segment stays counted)."""
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        with self._sizes_lock:
            self._sizes.pop(path, None)

    def close(self) -> None:
        """Finishes pending appends, stops the thread and releases the folder."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        self._lock_file.close()
        os.close(self._directory_fd)

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
                self._commit_or_fail(ops)
            elif self._closing:
                return

    def _commit_or_fail(self, ops: list[tuple]) -> None:
        try:
            done = self._commit(ops)
        except Exception as error:  # noqa: BLE001 - a bug must not stop the thread: requests would wait forever
            _logger.exception("spool commit of %d operation(s) failed; their requests get an error", len(ops))
            self._count_error(f"spool commit failed: {error!r}")
            # No request of ``ops`` was answered yet (answers go out below, all at once): all of them fail.
            done = self._fail_all(ops, error if isinstance(error, OSError) else OSError(errno.EIO, repr(error)))
        _resolve(done)

    def _commit(self, ops: list[tuple]) -> list[tuple[asyncio.Future, BaseException | None]]:
        # Write every frame, fsync each touched segment once; the caller then answers all their requests.
        done: list[tuple[asyncio.Future, BaseException | None]] = []
        dirty: dict[Segment, list[tuple[int, asyncio.Future]]] = {}
        for op in ops:
            if op[0] == "append":
                _, segment, index, data, future = op
                error = self._write(segment, data)
                if error is None:
                    dirty.setdefault(segment, []).append((index, future))
                else:
                    segment.failed.add(index)
                    done.append((future, error))
            else:
                segment = op[1]
                done += self._sync(segment, dirty.pop(segment, []))
                self._seal(segment)
        for segment, frames in dirty.items():
            done += self._sync(segment, frames)
        return done

    def _write(self, segment: Segment, data: bytes) -> OSError | None:
        """Writes one frame; on failure the segment ends at its last whole frame again (or is broken)."""
        fd = segment._fd
        if segment.broken is not None or fd is None:
            why = segment.broken or "sealed"
            return OSError(errno.EIO, f"spool segment {segment.path.name} takes no more frames ({why})")
        try:
            _write_all(fd, data)
        except OSError as error:
            self._count_error(f"cannot append to spool segment {segment.path.name}: {error}")
            _logger.error("cannot append to spool segment %s: %s", segment.path, error)
            self._truncate(segment, fd, segment.end)
            return error
        segment.end += len(data)
        return None

    def _truncate(self, segment: Segment, fd: int, size: int) -> None:
        # A part of a frame left in the file would be followed by the next, acknowledged frames; replay can read
        # past it, but a segment that ends on a whole frame needs no such trust. Truncating frees space, so it
        # works on a full disk; if it fails all the same, the segment takes no more frames.
        try:
            os.ftruncate(fd, size)
        except OSError as error:
            self._count_error(f"cannot truncate spool segment {segment.path.name}: {error}")
            _logger.error("cannot truncate spool segment %s back to %d bytes: %s", segment.path, size, error)
            segment.broken = f"truncate failed: {error}"

    def _sync(
        self, segment: Segment, frames: list[tuple[int, asyncio.Future]]
    ) -> list[tuple[asyncio.Future, BaseException | None]]:
        if not frames:
            return []
        fd = segment._fd
        assert fd is not None, "frames were written to the segment (_write), and only _seal closes it, after this"
        try:
            os.fsync(fd)
            if not segment._entry_synced:
                # The file's directory entry must survive a crash as well as its content.
                os.fsync(self._directory_fd)
                segment._entry_synced = True
        except OSError as error:
            self._count_error(f"cannot fsync spool segment {segment.path.name}: {error}")
            _logger.error("cannot fsync spool segment %s: %s", segment.path, error)
            # After a failed fsync the kernel may have dropped written pages and a later fsync may succeed all
            # the same: nothing more goes into this file; what was not synced is cut off if possible.
            segment.broken = f"fsync failed: {error}"
            segment.failed.update(index for index, _ in frames)
            segment.end = segment.synced
            self._truncate(segment, fd, segment.synced)
            return [(future, error) for _, future in frames]
        segment.synced = segment.end
        self.last_error = None
        with self._sizes_lock:
            if segment.path in self._sizes:
                self._sizes[segment.path] = segment.synced
        return [(future, None) for _, future in frames]

    def _seal(self, segment: Segment) -> None:
        # Every frame's fate is known once its fsync ran: a failed close loses nothing that was acknowledged.
        try:
            segment._close()
        except OSError as error:
            self._count_error(f"cannot close spool segment {segment.path.name}: {error}")
            _logger.error("cannot close spool segment %s: %s", segment.path, error)
        finally:
            segment.settled.set()

    def _fail_all(self, ops: list[tuple], error: OSError) -> list[tuple[asyncio.Future, BaseException | None]]:
        """Fails every request of ``ops`` (those answered already stay so) and settles their sealed segments."""
        done: list[tuple[asyncio.Future, BaseException | None]] = []
        for op in ops:
            segment = op[1]
            if op[0] == "append":
                segment.failed.add(op[2])
                segment.broken = segment.broken or f"spool commit failed: {error}"
                done.append((op[4], error))
            else:
                self._seal(segment)
        return done

    def _count_error(self, cause: str) -> None:
        self.errors += 1
        self.last_error = cause


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
