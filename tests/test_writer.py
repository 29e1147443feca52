"""The Writer: one encode path for rows and Arrow tables, and one retry policy (Backoff) for every write.

The collector's writer thread writes its batches through :meth:`Writer.write_files` with its own Backoff, so the
delays between its retries of a batch and the writer's retries of a file are one growing sequence.
"""

from __future__ import annotations

import io
import threading
import time

import pyarrow.parquet as pq
import pytest

from otel_datasink.collector import batcher as batcher_module
from otel_datasink.collector.batcher import Batch, Batcher
from otel_datasink.collector.counters import Metrics
from otel_datasink.collector.settings import CollectorSettings
from otel_datasink.collector.spool import Spool
from otel_datasink.config import Options
from otel_datasink.schema import DATASET_STATUS_TABLE, JOB_RUNS_TABLE, to_arrow
from otel_datasink.writer import Backoff, WriteError, Writer, arrow_parts

DAY_MS = 86_400_000
NOV_26 = 1_795_651_200_000  # 2026-11-26T00:00:00Z in epoch ms


def run_row(run_id: str, event_time: int) -> dict:
    return {"run_id": run_id, "job_name": "ingest", "status": "SUCCESS", "event_time": event_time, "attempt": 1}


class RecordingStop(threading.Event):
    """A stop event that is never set and records the delays waited on it instead of waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.delays.append(timeout)
        return False


@pytest.fixture
def writer(local_location) -> Writer:
    return Writer(Options.resolve(local_location))


def read(path: str) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_rows_and_arrow_tables_are_encoded_alike_one_file_per_table_and_partition(writer):
    rows = [run_row("a", NOV_26 + 1), run_row("b", NOV_26 + DAY_MS + 1), run_row("c", NOV_26 + 2)]

    from_rows = writer.write({JOB_RUNS_TABLE: rows, DATASET_STATUS_TABLE: []})
    # The collector's shape: each request's rows already Arrow, several tables for one file.
    files: dict = {}
    for request in (rows[:1], rows[1:]):
        for key, table in arrow_parts({JOB_RUNS_TABLE: request}):
            files.setdefault(key, []).append(table)
    from_tables = writer.write_files(files.items())

    assert [path.split("/")[-2] for path in from_rows] == ["dt=2026-11-26", "dt=2026-11-27"]
    assert [path.split("/")[-2] for path in from_tables] == ["dt=2026-11-26", "dt=2026-11-27"]
    assert [read(path) for path in from_rows] == [read(path) for path in from_tables]
    assert [row["run_id"] for row in read(from_tables[0])] == ["a", "c"]  # two requests' tables, one file
    for path in from_rows + from_tables:
        column = pq.ParquetFile(path).metadata.row_group(0).column(0)
        assert column.compression == writer.options.compression.upper()


def test_encode_of_rows_is_encode_tables_of_their_arrow_table(writer):
    rows = [run_row("a", NOV_26)]

    assert read_bytes(writer.encode(JOB_RUNS_TABLE, rows)) == read_bytes(
        writer.encode_tables([to_arrow(JOB_RUNS_TABLE, rows)])
    )


def read_bytes(data: bytes) -> list[dict]:
    return pq.read_table(io.BytesIO(data)).to_pylist()


def test_an_unknown_table_raises_before_it_is_written(writer):
    with pytest.raises(ValueError, match="unknown table 'job_run'"):
        writer.write({"job_run": [run_row("b", NOV_26)], JOB_RUNS_TABLE: [run_row("a", NOV_26)]})
    assert not writer.fs.exists(writer.path(JOB_RUNS_TABLE))


def test_rows_that_cannot_be_converted_fail_their_own_file_not_the_ones_before(writer):
    rows = {
        JOB_RUNS_TABLE: [run_row("a", NOV_26)],
        DATASET_STATUS_TABLE: [{"dataset": "d", "event_time": 10**24}],  # an instant no timestamp holds
    }
    with pytest.raises(OverflowError):
        writer.write(rows)
    (written,) = writer.fs.find(writer.path(JOB_RUNS_TABLE))
    assert [row["run_id"] for row in read(written)] == ["a"]


def test_backoff_doubles_to_its_maximum_with_jitter_and_starts_again_after_a_success():
    backoff = Backoff()
    delays = [backoff.delay() for _ in range(7)]
    backoff.reset()

    for delay, nominal in zip(delays, [0.5, 1, 2, 4, 8, 8, 8], strict=True):
        assert 0.8 * nominal <= delay <= 1.2 * nominal
    assert 0.4 <= backoff.delay() <= 0.6


def failing_puts(monkeypatch, writer: Writer, failures: int, error: Exception) -> list[str]:
    """Makes the next ``failures`` puts of ``writer`` fail with ``error``; returns the paths put since."""
    real = writer._put_once
    put: list[str] = []

    def put_once(path, data, **kwargs):
        if len(put) < failures:
            put.append(path)
            raise error
        put.append(path)
        return real(path, data, **kwargs)

    monkeypatch.setattr(writer, "_put_once", put_once)
    return put


def test_a_transient_error_is_retried_with_the_backoffs_delays_which_a_success_resets(writer, monkeypatch):
    puts = failing_puts(monkeypatch, writer, 2, ConnectionError("reset by peer"))
    stop = RecordingStop()
    backoff = Backoff(0.01, 0.04)

    (path,) = writer.write({JOB_RUNS_TABLE: [run_row("a", NOV_26)]}, stop=stop, backoff=backoff)

    assert puts == [path, path, path]
    (first, second) = stop.delays
    assert 0.008 <= first <= 0.012 and 0.016 <= second <= 0.024
    assert 0.008 <= backoff.delay() <= 0.012  # back to the start


def test_a_permanent_error_fails_at_once_and_a_transient_one_at_the_deadline(writer, monkeypatch):
    failing_puts(monkeypatch, writer, 1, PermissionError(13, "Permission denied"))
    stop = RecordingStop()
    with pytest.raises(WriteError, match="Permission denied"):
        writer.write({JOB_RUNS_TABLE: [run_row("a", NOV_26)]}, stop=stop)
    assert stop.delays == []

    failing_puts(monkeypatch, writer, 100, ConnectionError("refused"))
    with pytest.raises(WriteError, match=r"after \d+ attempt\(s\): ConnectionError"):
        writer.write({JOB_RUNS_TABLE: [run_row("a", NOV_26)]}, deadline=time.monotonic() + 0.05)


def test_the_collectors_retries_of_a_batch_and_the_writers_of_a_file_are_one_sequence_of_delays(
    local_location, monkeypatch, tmp_path
):
    monkeypatch.setattr(batcher_module, "_RETRY_BACKOFF", (0.01, 0.08))
    drawn: list[float] = []
    real_delay = Backoff.delay

    def delay(self):
        drawn.append(self._next)
        return real_delay(self)

    monkeypatch.setattr(Backoff, "delay", delay)
    # A write gives up within a retry or two (its deadline), and the thread tries the batch again.
    writer = Writer(Options.resolve(local_location, timeout=0.015))
    puts = failing_puts(monkeypatch, writer, 4, ConnectionError("refused"))
    spool = Spool(tmp_path / "spool")
    batcher = Batcher(writer, spool, CollectorSettings(), Metrics())
    batch = Batch()
    batch.extend({JOB_RUNS_TABLE: [run_row("a", NOV_26)]})
    try:
        batcher.enqueue(batch)
        deadline = time.monotonic() + 10
        while batcher.metrics.files_written == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        assert batcher.drain(5)
        spool.close()

    assert batcher.metrics.files_written == 1 and len(puts) == 5
    # Nominal delays drawn by the writer and the thread alike: one doubling sequence, never restarted.
    assert drawn[:4] == [0.01, 0.02, 0.04, 0.08]
    assert batcher.last_error is None
