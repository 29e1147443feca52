"""The spool and the batcher under injected faults: a write cut off by a full disk, failing truncate, fsync and
close, an unexpected error in the spool thread, segments that cannot be removed, and replay of damaged segments.

The faults are injected into the system calls of one file descriptor (or one kind of path) only; the files, the
Parquet and the collector are real. The same faults on a real full disk and a real undeletable folder, with the
collector as a process, are in test_collector_durability.py.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import pathlib
import struct
import time
import zlib
from pathlib import Path

import pytest
from collectors import post, rows, start_collector
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from otlp_payloads import job_spans

from otel_datasink.collector import batcher as batcher_module
from otel_datasink.collector import spool as spool_module
from otel_datasink.collector.spool import Segment, Spool, read_segment
from otel_datasink.formats import Format
from otel_datasink.writer import WriteError, Writer


def frame(payload: bytes, kind: int = Format.OTLP_PROTOBUF) -> bytes:
    """A spool frame as on disk: magic, kind, length, CRC-32 (big-endian), payload."""
    return struct.pack(">4sBII", b"ODS1", kind, len(payload), zlib.crc32(payload)) + payload


async def outcome(future: asyncio.Future) -> OSError | None:
    """None once a frame is fsynced, the OSError its request was answered with otherwise (never waits forever)."""
    try:
        await asyncio.wait_for(future, 5)
    except OSError as error:
        return error
    return None


def append_all(spool: Spool, segment: Segment, payloads: list[bytes], before_each=None) -> list[OSError | None]:
    """Appends ``payloads`` one after the other (one commit each); calls ``before_each(i)`` first."""

    async def go() -> list[OSError | None]:
        results = []
        for i, payload in enumerate(payloads):
            if before_each is not None:
                before_each(i)
            results.append(await outcome(spool.append(segment, Format.OTLP_PROTOBUF, payload)))
        return results

    return asyncio.run(go())


class FailingCall:
    """Replaces ``os.<name>``: for the descriptors in ``fds`` (all when empty) fails with ``code`` while armed.

    For ``write``, ``room`` bytes are written first (a disk that fills up in the middle of a frame).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, code: int = errno.EIO, room: int = 0) -> None:
        self.real = getattr(os, name)
        self.name, self.code, self.room = name, code, room
        self.fds: set[int] = set()
        self.armed = False
        self.calls = 0
        monkeypatch.setattr(os, name, self)

    def __call__(self, fd: int, *args):
        if not self.armed or (self.fds and fd not in self.fds):
            return self.real(fd, *args)
        self.calls += 1
        if self.name == "write" and self.room:
            written = self.real(fd, bytes(args[0][: self.room]))
            self.room -= written
            return written
        if self.name == "close":
            self.real(fd)  # closed all the same, as close(2) does on EIO
        raise OSError(self.code, os.strerror(self.code))


@pytest.fixture
def spool(tmp_path):
    running = Spool(tmp_path / "spool")
    yield running
    running.close()


def sealed(spool: Spool, segment: Segment) -> Segment:
    """Seals a segment and waits until every frame's fate is known."""
    spool.seal(segment)
    assert segment.settled.wait(5)
    return segment


# --- appends that fail -------------------------------------------------------------------------------------------


def test_a_frame_cut_off_by_a_full_disk_is_truncated_away_and_later_acknowledged_frames_replay(spool, monkeypatch):
    segment = spool.new_segment()
    disk = FailingCall(monkeypatch, "write", errno.ENOSPC, room=10)
    disk.fds.add(segment._fd)
    payloads = [b"A" * 100, b"B" * 100, b"C" * 100]

    results = append_all(spool, segment, payloads, before_each=lambda i: setattr(disk, "armed", i == 1))

    assert results[0] is None and results[2] is None
    assert results[1].errno == errno.ENOSPC
    assert disk.calls == 2  # 10 bytes written, then ENOSPC
    sealed(spool, segment)
    assert segment.failed == {1}
    assert segment.path.read_bytes() == frame(payloads[0]) + frame(payloads[2])
    assert [payload for _, payload in read_segment(segment.path)] == [payloads[0], payloads[2]]
    assert spool.errors == 1
    assert spool.last_error is None  # the next fsync succeeded
    assert spool.depth_bytes == len(frame(payloads[0]) + frame(payloads[2]))


def test_when_the_truncate_fails_too_the_segment_takes_no_more_frames(spool, monkeypatch):
    segment = spool.new_segment()
    disk = FailingCall(monkeypatch, "write", errno.ENOSPC, room=10)
    truncate = FailingCall(monkeypatch, "ftruncate", errno.EIO)
    disk.fds.add(segment._fd)
    truncate.armed = True
    payloads = [b"A" * 100, b"B" * 100, b"C" * 100]

    results = append_all(spool, segment, payloads, before_each=lambda i: setattr(disk, "armed", i == 1))

    assert results[0] is None
    assert results[1].errno == errno.ENOSPC
    assert results[2].errno == errno.EIO and "takes no more frames" in str(results[2])
    assert "truncate failed" in segment.broken
    sealed(spool, segment)
    assert segment.failed == {1, 2}
    # Only the cut-off frame follows the acknowledged one, and nothing follows it.
    assert segment.path.read_bytes() == frame(payloads[0]) + frame(payloads[1])[:10]
    assert [payload for _, payload in read_segment(segment.path)] == [payloads[0]]


def test_a_failed_fsync_answers_its_requests_with_an_error_and_breaks_the_segment(spool, monkeypatch):
    segment = spool.new_segment()
    fsync = FailingCall(monkeypatch, "fsync", errno.EIO)
    fsync.fds.add(segment._fd)

    results = append_all(spool, segment, [b"A" * 100, b"B" * 100], before_each=lambda i: setattr(fsync, "armed", True))

    assert results[0].errno == errno.EIO  # answered, not left waiting
    assert "takes no more frames" in str(results[1])
    assert segment.broken.startswith("fsync failed")
    assert segment.path.read_bytes() == b""  # what was not synced is cut off
    assert spool.last_error.startswith("cannot fsync")
    sealed(spool, segment)
    assert segment.failed == {0, 1}

    fsync.armed = False
    fresh = spool.new_segment()  # the thread lives on
    assert append_all(spool, fresh, [b"C" * 100]) == [None]
    assert spool.last_error is None


def test_a_failed_close_on_seal_loses_nothing_and_settles_the_segment(spool, monkeypatch):
    segment = spool.new_segment()
    close = FailingCall(monkeypatch, "close", errno.EIO)
    close.fds.add(segment._fd)
    close.armed = True

    assert append_all(spool, segment, [b"A" * 100]) == [None]
    sealed(spool, segment)

    assert close.calls == 1
    assert segment.failed == set()
    assert [payload for _, payload in read_segment(segment.path)] == [b"A" * 100]
    assert spool.errors == 1
    close.armed = False
    assert append_all(spool, spool.new_segment(), [b"B" * 100]) == [None]


def test_an_unexpected_error_in_the_spool_thread_fails_its_requests_and_the_thread_lives_on(spool, monkeypatch):
    def broken(fd: int, data: bytes) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(spool_module, "_write_all", broken)
    segment = spool.new_segment()
    (result,) = append_all(spool, segment, [b"A" * 100])
    assert isinstance(result, OSError) and "a bug" in str(result)
    sealed(spool, segment)
    assert segment.failed == {0}

    monkeypatch.undo()
    assert append_all(spool, spool.new_segment(), [b"B" * 100]) == [None]


def test_a_segment_that_cannot_be_created_is_not_counted(spool, monkeypatch):
    real_open = os.open

    def no_segments(path, *args, **kwargs):
        if str(path).endswith(".seg"):
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_segments)
    for _ in range(3):
        with pytest.raises(PermissionError):
            spool.new_segment()
    assert spool.depth == 0
    assert (spool.errors, spool.last_error.startswith("cannot create a spool segment")) == (3, True)


# --- replay of damaged segments ----------------------------------------------------------------------------------


def test_replay_reads_on_past_garbage_in_the_middle(tmp_path, caplog):
    a, b, c, d = (bytes([i]) * (50 + i) for i in range(4))
    garbage = b"\x00" * 7 + frame(b)[:30] + b"ODS1\x01junk" + os.urandom(200).replace(b"ODS1", b"odsl")
    path = tmp_path / "1.seg"
    path.write_bytes(frame(a) + garbage + frame(c) + frame(d, Format.OTLP_JSON))

    with caplog.at_level(logging.WARNING):
        assert list(read_segment(path)) == [(Format.OTLP_PROTOBUF, a), (Format.OTLP_PROTOBUF, c), (Format.OTLP_JSON, d)]
    assert f"{len(garbage)} corrupt bytes at byte {len(frame(a))} skipped" in caplog.text


def test_the_frame_kinds_are_those_older_collectors_spooled(tmp_path):
    # A segment left by an older collector is replayed by this one: its kind bytes keep their meaning.
    path = tmp_path / "1.seg"
    path.write_bytes(frame(b"p", 1) + frame(b"j", 2) + frame(b"o", 3))

    assert list(read_segment(path)) == [
        (Format.OTLP_PROTOBUF, b"p"),
        (Format.OTLP_JSON, b"j"),
        (Format.OPENLINEAGE, b"o"),
    ]


def test_replay_reads_on_past_a_frame_with_a_bad_checksum_or_a_length_past_the_end(tmp_path):
    a, b, c = b"a" * 80, b"b" * 80, b"c" * 80
    flipped = bytearray(frame(b))
    flipped[-1] ^= 1
    too_long = struct.pack(">4sBII", b"ODS1", Format.OTLP_PROTOBUF, 1 << 30, 0) + b"short"
    path = tmp_path / "1.seg"
    path.write_bytes(frame(a) + bytes(flipped) + too_long + frame(c))

    assert [payload for _, payload in read_segment(path)] == [a, c]


def test_replay_never_looks_for_frames_inside_a_valid_frame_and_skips_a_torn_tail(tmp_path, caplog):
    inner = frame(b"a request carried inside another one's attribute")
    path = tmp_path / "1.seg"
    path.write_bytes(frame(inner) + frame(b"torn" * 20)[:40])

    with caplog.at_level(logging.WARNING):
        assert [payload for _, payload in read_segment(path)] == [inner]
    assert "torn frame of 40 bytes" in caplog.text


# --- the batcher: rows of rejected requests, removal and write errors --------------------------------------------


def spans_request(count: int) -> tuple[bytes, set[str]]:
    """A protobuf export request of ``count`` job spans, and their span ids."""
    spans = job_spans(count, with_noise=False)
    return encode_spans(spans).SerializeToString(), {f"{span.context.span_id:016x}" for span in spans}


def wait_for(condition, timeout: float = 10.0) -> None:
    """Polls ``condition()`` until it is true; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def wait_for_rows(collector, count: int) -> None:
    """Waits until the collector has written ``count`` job_runs rows."""
    wait_for(lambda: collector.metrics.rows_written["job_runs"] == count)


def test_a_request_that_could_not_be_spooled_leaves_no_rows_in_the_batch(local_location, tmp_path, monkeypatch):
    real_write_all = spool_module._write_all
    full = {"disk": False}

    def write_all(fd: int, data: bytes) -> None:
        if full["disk"]:
            os.write(fd, data[:25])  # part of the frame, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_all(fd, data)

    monkeypatch.setattr(spool_module, "_write_all", write_all)
    statuses, acknowledged, rejected = [], set(), set()
    with start_collector(local_location, tmp_path / "spool", flush_age=3600) as collector:
        for disk_full in (False, True, False):
            full["disk"] = disk_full
            body, ids = spans_request(4)
            status, _, _ = post(collector.http_port, body)
            statuses.append(status)
            (acknowledged if status == 200 else rejected).update(ids)
    # Stopped: the one batch was written from memory.

    assert statuses == [200, 503, 200]
    assert {row["span_id"] for row in rows(local_location, timeout=0)} == acknowledged
    assert collector.metrics.rows_written["job_runs"] == len(acknowledged)
    assert not list((tmp_path / "spool").glob("*.seg"))


def test_a_segment_that_cannot_be_removed_is_retried_and_never_stops_the_writer(local_location, tmp_path, monkeypatch):
    real_unlink = pathlib.Path.unlink
    denied = {"on": True}

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if denied["on"] and path.suffix == ".seg":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        real_unlink(path, missing_ok)

    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    monkeypatch.setattr(batcher_module, "_RETRY_BACKOFF", (0.1, 0.2))
    acknowledged: set[str] = set()
    with start_collector(local_location, tmp_path / "spool", max_pending_batches=2) as collector:
        batcher = collector.batcher
        for _ in range(5):  # more batches than max_pending_batches: a stopped writer would make them 503
            body, ids = spans_request(2)
            assert post(collector.http_port, body)[0] == 200
            acknowledged |= ids
            wait_for_rows(collector, len(acknowledged))
        assert batcher.last_error.startswith("cannot remove spool segment")
        assert collector.metrics.write_errors >= 5
        assert collector.spool.depth == 5
        files = collector.metrics.files_written

        denied["on"] = False
        wait_for(lambda: collector.spool.depth == 0)
        assert batcher.last_error is None
        assert collector.metrics.files_written == files  # removed, not written again
    found = [row["span_id"] for row in rows(local_location, timeout=0)]
    assert sorted(found) == sorted(acknowledged)  # each once


def test_last_error_says_why_a_batch_cannot_be_written_until_one_is(local_location, tmp_path, monkeypatch):
    real_put = Writer.put
    failing = {"on": True}

    def put(self, path, data, **kwargs):
        if failing["on"]:
            raise WriteError("the store said no\nsecond line")
        return real_put(self, path, data, **kwargs)

    monkeypatch.setattr(Writer, "put", put)
    monkeypatch.setattr(batcher_module, "_RETRY_BACKOFF", (0.1, 0.2))
    with start_collector(local_location, tmp_path / "spool") as collector:
        body, ids = spans_request(2)
        assert post(collector.http_port, body)[0] == 200
        wait_for(lambda: collector.metrics.write_errors >= 2)
        assert collector.batcher.last_error == "cannot write a batch: the store said no"
        failing["on"] = False
        wait_for(lambda: collector.metrics.rows_written["job_runs"] == 2)
        assert collector.batcher.last_error is None
    assert {row["span_id"] for row in rows(local_location, timeout=0)} == ids


def test_an_unexpected_error_in_the_writer_thread_is_logged_counted_and_retried(local_location, tmp_path, monkeypatch):
    real_settle = batcher_module.Batcher._settle
    calls = {"n": 0}

    def settle(self, batch):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug")
        return real_settle(self, batch)

    monkeypatch.setattr(batcher_module.Batcher, "_settle", settle)
    monkeypatch.setattr(batcher_module, "_RETRY_BACKOFF", (0.1, 0.2))
    with start_collector(local_location, tmp_path / "spool") as collector:
        body, ids = spans_request(2)
        assert post(collector.http_port, body)[0] == 200
        wait_for(lambda: collector.metrics.rows_written["job_runs"] == 2)
        assert collector.metrics.write_errors == 1
        assert collector.batcher.last_error is None
        assert collector.batcher._thread.is_alive()
    assert {row["span_id"] for row in rows(local_location, timeout=0)} == ids
