"""Rows batched across requests, rolled into files by rows, bytes and age, written by one background thread.

The batch being filled lives on the event loop, with its spool segment (:mod:`.spool`). Each request's rows
become Arrow tables per table and ``dt`` partition (and per 5,000 rows) at once, before they join the batch: a
batch of 100,000 rows then holds a few hundred Arrow tables instead of 200,000 dicts that the garbage collector
would scan again and again. The collector converts a big request's rows on its decoding thread, not on the loop
(:meth:`Batch.convert`, then :meth:`Batcher.add`). When the batch
reaches ``flush_rows`` rows, ``flush_bytes`` spooled bytes or ``flush_age`` seconds, it is rolled: its segment
is sealed and the batch queued for the writer thread, which has the :class:`~otel_datasink.writer.Writer` put
one file per table per ``dt`` partition (:meth:`~otel_datasink.writer.Writer.write_files`) and only then removes
the segment. A store that fails keeps the batch at the head of the queue, tried again after the writer's next
backoff delay (one :class:`~otel_datasink.writer.Backoff` for the writer's retries and the thread's, so the
delays keep growing while the store fails); while more than ``max_pending_batches`` wait, the receivers answer
"backlogged" (HTTP 503, gRPC UNAVAILABLE) so that clients retry later.

A request's rows join the batch before its frame is fsynced; the writer thread writes a batch only once its
segment is settled (sealed, every append answered) and first drops the rows of the requests whose append failed:
those clients were told to retry, so the rows must not reach the store from memory. A segment that cannot be
removed after its batch is written is kept aside and its removal retried with backoff: the batch is never
written again, and a restart that replays the segment only writes duplicates, which the views collapse. The
writer thread never ends on an error; :attr:`Batcher.last_error` says what failed until it works again.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import threading
import time
from pathlib import Path

import pyarrow as pa

from otel_datasink.collector.counters import Metrics
from otel_datasink.collector.settings import CollectorSettings
from otel_datasink.collector.spool import Segment, Spool
from otel_datasink.schema import TABLES, Rows
from otel_datasink.writer import Backoff, WriteError, Writer, arrow_parts

_logger = logging.getLogger(__name__)

_RETRY_BACKOFF = (Backoff.INITIAL, Backoff.MAXIMUM)
"""The writer's backoff bounds, read when the writer thread starts (tests shorten them)."""
_SETTLE_POLL_SECONDS = 0.1
_CONVERT_CHUNK_ROWS = 5_000
"""Rows converted to Arrow in one call. Converting a list of dicts is one C call that holds the GIL throughout
(133k rows: 0.25 s), so a conversion on a worker thread would stall the event loop as long; in chunks of 5,000
(~10 ms) the loop gets the GIL back between them, and the conversion takes no longer (0.29 s vs 0.37 s)."""

Parts = list[tuple[tuple[str, str], pa.Table]]
"""The Arrow tables of one request's rows, each with its (table, dt) file."""


@dataclasses.dataclass
class Batch:
    """Rows of many requests bound for the same files, and the spool segment that holds their requests."""

    parts: dict[tuple[str, str], list[pa.Table]] = dataclasses.field(default_factory=dict)
    """(table, dt) -> the Arrow tables of that file, one per request."""
    row_count: int = 0
    spooled_bytes: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    segment: Path | None = None
    spooled: Segment | None = None
    """The live segment being filled, whose failed frames' rows are dropped before writing; None when replayed."""
    written: bool = False
    """Whether the batch's files are in the store (only its segment's removal may be left to do)."""
    _by_frame: dict[int, Parts] = dataclasses.field(default_factory=dict)

    @staticmethod
    def convert(rows: Rows) -> Parts:
        """Rows of the tables as Arrow tables split by ``dt`` partition and into chunks of at most
        ``_CONVERT_CHUNK_ROWS`` rows, in order (done before the request is spooled).

        Reads only ``rows``: safe on a worker thread, which lets the event loop in between chunks.
        """
        return [
            part
            for table, table_rows in rows.items()
            for start in range(0, len(table_rows), _CONVERT_CHUNK_ROWS)
            for part in arrow_parts({table: table_rows[start : start + _CONVERT_CHUNK_ROWS]})
        ]

    def extend(self, rows: Rows, frame: int | None = None) -> None:
        """Adds rows of the tables, converted to Arrow and split by ``dt`` partition."""
        self.attach(self.convert(rows), frame)

    def attach(self, parts: Parts, frame: int | None = None) -> None:
        """Adds converted rows; those of spool frame ``frame`` can be dropped again (:meth:`drop`)."""
        for key, table in parts:
            self.parts.setdefault(key, []).append(table)
            self.row_count += table.num_rows
        if frame is not None:
            self._by_frame[frame] = parts

    def drop(self, frames: set[int]) -> None:
        """Removes the rows of the given spool frames (requests whose append failed)."""
        for frame in frames:
            for key, table in self._by_frame.pop(frame, ()):
                tables = self.parts[key]
                # By identity: two requests may well carry equal rows.
                del tables[next(i for i, t in enumerate(tables) if t is table)]
                if not tables:
                    del self.parts[key]
                self.row_count -= table.num_rows

    def rows_of(self, table: str) -> int:
        """Rows of one table in the batch."""
        return sum(t.num_rows for (name, _), tables in self.parts.items() if name == table for t in tables)


class Batcher:
    """Fills batches on the event loop and writes rolled ones from a thread."""

    def __init__(self, writer: Writer, spool: Spool, settings: CollectorSettings, metrics: Metrics) -> None:
        self.writer = writer
        self.spool = spool
        self.settings = settings
        self.metrics = metrics
        self._current: Batch | None = None
        self._segment: Segment | None = None
        self._pending: collections.deque[Batch] = collections.deque()
        self._unremoved: list[Path] = []
        """Segments of written batches whose removal failed, retried with backoff (writer thread only)."""
        self._write_backoff = Backoff(*_RETRY_BACKOFF)
        """The delays of the batch at the head of the queue: the writer's retries and the thread's, one sequence."""
        self._removal_backoff = Backoff(*_RETRY_BACKOFF)
        self._removal_due = 0.0
        self._write_error: str | None = None
        self._removal_error: str | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(name="otel-datasink-writer", target=self._run, daemon=True)
        self._thread.start()
        metrics.gauges.update(
            pending_batches=lambda: len(self._pending),
            pending_rows=lambda: (
                sum(b.row_count for b in list(self._pending)) + (self._current.row_count if self._current else 0)
            ),
            spool_segments=lambda: spool.depth,
            spool_bytes=lambda: spool.depth_bytes,
            spool_unremoved_segments=lambda: len(self._unremoved),
        )

    @property
    def last_error(self) -> str | None:
        """The cause (one line) of the last failure of the writer thread or the spool, None once they work again.

        A failed batch write counts until a batch is written; a failed segment removal until every written
        batch's segment is removed; a failed spool operation (creating, appending to, fsyncing a segment) until
        the next fsync succeeds.
        """
        return self._write_error or self._removal_error or self.spool.last_error

    @property
    def backlogged(self) -> bool:
        """Whether the store is behind: ``max_pending_batches`` rolled batches or more wait to be written."""
        return len(self._pending) >= self.settings.max_pending_batches

    def add(self, parts: Parts, kind: int, body: bytes) -> asyncio.Future:
        """Adds a request's rows, converted by :meth:`Batch.convert`, to the current batch; the future completes
        once the request is spooled.

        Raises OSError when no segment can be created; the future fails with OSError when the request could not
        be spooled, and its rows are then left out of the batch.
        """
        if self._segment is not None and self._segment.broken is not None:
            self.roll()  # the segment takes no more frames: the next requests go to a new one
        batch, segment = self._current, self._segment
        if batch is None:
            segment = self._segment = self.spool.new_segment()
            batch = self._current = Batch(segment=segment.path, spooled=segment)
        assert segment is not None, "the current batch has its segment: both are set here and cleared by roll()"
        frame = segment.frames
        spooled = self.spool.append(segment, kind, body)
        batch.attach(parts, frame)
        batch.spooled_bytes += len(body)
        if batch.row_count >= self.settings.flush_rows or batch.spooled_bytes >= self.settings.flush_bytes:
            self.roll()
        return spooled

    def roll_if_old(self) -> None:
        """Rolls the current batch once it is ``flush_age`` old (called periodically from the loop)."""
        if self._current is not None and time.monotonic() - self._current.started >= self.settings.flush_age:
            self.roll()

    def roll(self) -> None:
        """Queues the current batch for writing and starts a new one with the next request."""
        batch, self._current = self._current, None
        if batch is None:
            return
        if self._segment is not None:
            self.spool.seal(self._segment)
            self._segment = None
        self.enqueue(batch)

    def enqueue(self, batch: Batch) -> None:
        """Queues a complete batch (a rolled one, or one replayed from the spool) for the writer thread."""
        with self._cond:
            self._pending.append(batch)
            self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Rolls the current batch and waits up to ``timeout`` s for every batch to be written; True if all were.

        Then the writer thread stops: batches still queued stay in the spool for the next start.
        """
        self.roll()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            done = not self._pending
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        return done

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if self._stop.is_set():
                self._retry_removals(force=True)  # last chance; a segment left is replayed (duplicates) next start
                return
            try:
                self._retry_removals()
                done = batch is None or self._write(batch)
            except Exception as error:  # noqa: BLE001 - the thread must outlive any error, or ingestion stops
                _logger.exception("writer thread error (retried)")
                self._count_write_error(f"writer thread error: {error!r}")
                done = False
            if done:
                self._write_backoff.reset()
                if batch is not None:
                    with self._cond:
                        self._pending.popleft()
                        self._cond.notify_all()
            else:  # the same batch again, after the writer's next delay; when stopping, the loop's head ends
                self._stop.wait(self._write_backoff.delay())

    def _next_batch(self) -> Batch | None:
        """The batch to write next; None when only a segment removal is due (or stopping)."""
        with self._cond:
            while not self._pending and not self._stop.is_set():
                if not self._unremoved:
                    self._cond.wait()
                    continue
                due = self._removal_due - time.monotonic()
                if due <= 0:
                    return None
                self._cond.wait(due)
            return self._pending[0] if self._pending else None

    def _write(self, batch: Batch) -> bool:
        """Writes a batch's files once (unless written already), then removes its segment; True when written."""
        if not batch.written:
            if not self._settle(batch):
                return False
            if not self._put_files(batch):
                return False
            batch.written = True
        if batch.segment is not None:
            self._remove(batch.segment)
        return True

    def _settle(self, batch: Batch) -> bool:
        """Waits until every append of the batch's segment is answered, then drops the rows of the failed ones."""
        segment = batch.spooled
        if segment is None:
            return True
        while not segment.settled.wait(_SETTLE_POLL_SECONDS):
            if self._stop.is_set():
                return False
        if segment.failed:
            batch.drop(segment.failed)
            segment.failed.clear()
        return True

    def _put_files(self, batch: Batch) -> bool:
        started = time.monotonic()
        try:
            paths = self.writer.write_files(
                sorted(batch.parts.items()),
                deadline=started + self.writer.options.timeout,
                stop=self._stop,
                backoff=self._write_backoff,
            )
        except WriteError as error:
            self._count_write_error(f"cannot write a batch: {error}")
            _logger.warning("cannot write a batch of %d rows (kept in the spool, retried): %s", batch.row_count, error)
            return False
        except Exception as error:  # noqa: BLE001 - a bug in one batch must not stop the writer thread for good
            self._count_write_error(f"cannot write a batch: {error!r}")
            _logger.exception("cannot write a batch of %d rows (kept in the spool, retried)", batch.row_count)
            return False
        self._write_error = None
        for table in TABLES:
            self.metrics.rows_written[table] += batch.rows_of(table)
        self.metrics.files_written += len(paths)
        _logger.info("wrote %d rows in %d file(s) in %.2fs", batch.row_count, len(paths), time.monotonic() - started)
        return True

    def _remove(self, segment: Path) -> None:
        """Removes a written batch's segment, or keeps it aside for a retry (never writing the batch again)."""
        try:
            self.spool.remove(segment)
        except OSError as error:
            self._unremoved.append(segment)
            self._removal_failed(segment, error)
            return
        if not self._unremoved:
            self._removal_error = None
        else:
            self._removal_due = 0.0  # removing works again: retry the segments kept aside now, not after backoff

    def _retry_removals(self, force: bool = False) -> None:
        """Removes the segments kept aside, once their retry is due (or now, with ``force``)."""
        if not self._unremoved or (not force and time.monotonic() < self._removal_due):
            return
        while self._unremoved:
            segment = self._unremoved[0]
            try:
                self.spool.remove(segment)
            except OSError as error:
                self._removal_failed(segment, error)
                return
            self._unremoved.pop(0)
        _logger.info("removed the spool segments left after their batches were written")
        self._removal_error = None
        self._removal_backoff.reset()

    def _removal_failed(self, segment: Path, error: OSError) -> None:
        self.metrics.write_errors += 1
        self._removal_error = f"cannot remove spool segment {segment.name}: {error}"
        _logger.warning(
            "cannot remove spool segment %s of a written batch (retried; a restart would replay it as duplicates): %s",
            segment,
            error,
        )
        self._removal_due = time.monotonic() + self._removal_backoff.delay()

    def _count_write_error(self, cause: str) -> None:
        self.metrics.write_errors += 1
        self._write_error = cause.splitlines()[0]  # one line, for /health
