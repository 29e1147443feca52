"""Rows batched across requests, rolled into files by rows, bytes and age, written by one background thread.

The batch being filled lives on the event loop, with its spool segment (:mod:`.spool`). Each request's rows
become Arrow tables per table and ``dt`` partition at once: a batch of 100,000 rows then holds a few hundred
Arrow tables instead of 200,000 dicts that the garbage collector would scan again and again. When the batch
reaches ``flush_rows`` rows, ``flush_bytes`` spooled bytes or ``flush_age`` seconds, it is rolled: its segment
is sealed and the batch queued for the writer thread, which puts one file per table per ``dt`` partition
(with the :class:`~otel_datasink.writer.Writer`'s Parquet options and retrying put) and only then removes the
segment. A store that fails keeps the batch at the head of the queue, retried with backoff; while more than
``max_pending_batches`` wait, the receivers answer "backlogged" (HTTP 503, gRPC UNAVAILABLE) so that clients
retry later.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import io
import logging
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from otel_datasink.collector.metrics import Metrics
from otel_datasink.collector.settings import CollectorSettings
from otel_datasink.collector.spool import Segment, Spool
from otel_datasink.mapping import Rows
from otel_datasink.schema import TABLES, to_arrow
from otel_datasink.writer import WriteError, Writer, by_partition, file_name

_logger = logging.getLogger(__name__)

_RETRY_BACKOFF = (0.5, 10.0)


@dataclasses.dataclass
class Batch:
    """Rows of many requests bound for the same files, and the spool segment that holds their requests."""

    parts: dict[tuple[str, str], list[pa.Table]] = dataclasses.field(default_factory=dict)
    """(table, dt) -> the Arrow tables of that file, one per request."""
    row_count: int = 0
    spooled_bytes: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    segment: Path | None = None

    def extend(self, rows: Rows) -> None:
        """Adds rows of the tables, converted to Arrow and split by ``dt`` partition."""
        for table, table_rows in rows.items():
            if not table_rows:
                continue
            for dt, part in by_partition(table_rows):
                self.parts.setdefault((table, dt), []).append(to_arrow(table, part))
            self.row_count += len(table_rows)

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
        )

    @property
    def backlogged(self) -> bool:
        """Whether the store is behind: ``max_pending_batches`` rolled batches or more wait to be written."""
        return len(self._pending) >= self.settings.max_pending_batches

    def add(self, rows: Rows, kind: int, body: bytes) -> asyncio.Future:
        """Adds a request's rows to the current batch; the future completes once the request is spooled."""
        batch = self._current
        if batch is None:
            self._segment = self.spool.new_segment()
            batch = self._current = Batch(segment=self._segment.path)
        batch.extend(rows)
        batch.spooled_bytes += len(body)
        spooled = self.spool.append(self._segment, kind, body)
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
        backoff = _RETRY_BACKOFF[0]
        while not self._stop.is_set():
            with self._cond:
                while not self._pending and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                batch = self._pending[0]
            if self._write(batch):
                backoff = _RETRY_BACKOFF[0]
                with self._cond:
                    self._pending.popleft()
                    self._cond.notify_all()
            elif self._stop.wait(backoff):
                return
            else:
                backoff = min(backoff * 2, _RETRY_BACKOFF[1])

    def _write(self, batch: Batch) -> bool:
        started = time.monotonic()
        writer = self.writer
        deadline = started + writer.options.timeout
        paths = []
        try:
            for (table, dt), tables in sorted(batch.parts.items()):
                buffer = io.BytesIO()
                pq.write_table(pa.concat_tables(tables), buffer, **writer.parquet_options())
                path = f"{writer.path(table, dt)}/{file_name()}"
                writer.put(path, buffer.getvalue(), deadline=deadline, stop=self._stop)
                paths.append(path)
        except WriteError as error:
            self.metrics.write_errors += 1
            _logger.warning("cannot write a batch of %d rows (kept in the spool, retried): %s", batch.row_count, error)
            return False
        except Exception:  # noqa: BLE001 - a bug in one batch must not stop the writer thread for good
            self.metrics.write_errors += 1
            _logger.exception("cannot write a batch of %d rows (kept in the spool, retried)", batch.row_count)
            return False
        for table in TABLES:
            self.metrics.rows_written[table] += batch.rows_of(table)
        self.metrics.files_written += len(paths)
        if batch.segment is not None:
            self.spool.remove(batch.segment)
        _logger.info("wrote %d rows in %d file(s) in %.2fs", batch.row_count, len(paths), time.monotonic() - started)
        return True
