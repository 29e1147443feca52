"""``otel-datasink collector`` as a process: acknowledged spans survive SIGKILL, SIGTERM flushes and exits 0.

Also on a spool disk that fills up (a tmpfs mounted by the test) and in a spool folder whose segments cannot be
removed for a while (``chattr +a``): no acknowledged span is lost, no rejected one is written, and ingestion
resumes once the disk has room again.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from collectors import CollectorProcess, rows
from command_line import assert_one_line_failure, cli
from disks import tmpfs
from network import free_port

from otel_datasink.local import connect


def test_acknowledged_spans_survive_sigkill_and_a_torn_frame_and_are_written_on_restart(local_location, tmp_path):
    spool = tmp_path / "spool"
    first = CollectorProcess(local_location, spool, tmp_path / "log", "--flush-age", "3600")
    sent = first.export(5) | first.export(7)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    assert rows(local_location, timeout=0) == []  # rows were only in the spool
    (segment,) = spool.glob("*.seg")
    with open(segment, "ab") as torn:  # a request cut off mid-append by the crash, never acknowledged
        torn.write(b"ODS1\x01\x00\x01\x00\x00partial")

    second = CollectorProcess(local_location, spool, tmp_path / "log", "--flush-age", "0.2")
    try:
        written = {row["span_id"] for row in rows(local_location, expect=len(sent), timeout=10)}
        sent |= second.export(2)
        written |= {row["span_id"] for row in rows(local_location, expect=len(sent), timeout=10)}
    finally:
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(timeout=15) == 0, (tmp_path / "log").read_text()

    assert written == sent
    assert not list(spool.glob("*.seg"))


def test_sigterm_flushes_the_open_batch_and_exits_0_within_the_bound(local_location, tmp_path):
    spool = tmp_path / "spool"
    collector = CollectorProcess(
        local_location, spool, tmp_path / "log", "--flush-age", "3600", "--shutdown-timeout", "5"
    )
    sent = collector.export(4)
    started = time.monotonic()
    collector.process.send_signal(signal.SIGTERM)
    code = collector.process.wait(timeout=15)
    elapsed = time.monotonic() - started

    assert code == 0, (tmp_path / "log").read_text()
    assert elapsed < 5
    assert {row["span_id"] for row in rows(local_location, timeout=0)} == sent
    assert not list(spool.glob("*.seg"))


def fill(disk: Path, leave: int) -> Path:
    """A file taking all the free space of ``disk`` but ``leave`` bytes."""
    stat = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as out:
        out.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler


def send_until_full(collector: CollectorProcess, disk: Path, rejections: int = 3) -> tuple[set[str], set[str]]:
    """Fills ``disk`` but 64 KiB and sends requests until ``rejections`` got 503; (acknowledged, rejected) ids."""
    filler = fill(disk, leave=64 * 1024)
    acknowledged: set[str] = set()
    rejected: set[str] = set()
    for _ in range(200):
        status, ids = collector.post(40)  # ~4.8 KB: a dozen fit, then one is cut off by ENOSPC
        assert status in (200, 503), status
        (acknowledged if status == 200 else rejected).update(ids)
        if status == 503 and len(rejected) >= 40 * rejections:
            break
    assert acknowledged and len(rejected) >= 40 * rejections, "the spool disk did not fill up"
    filler.unlink()
    return acknowledged, rejected


def span_id_counts(location: str, expect: int) -> collections.Counter:
    """span_id -> rows of it in job_runs (waiting up to 15 s for ``expect`` rows)."""
    return collections.Counter(row["span_id"] for row in rows(location, expect=expect, timeout=15))


def test_a_tmp_cleaner_cannot_unlock_the_spool_a_second_collector_is_refused_and_nothing_is_lost(
    local_location, tmp_path
):
    spool = tmp_path / "spool"
    log = tmp_path / "log"
    first = CollectorProcess(local_location, spool, log, "--flush-age", "3600")
    try:
        acknowledged = first.export(3)  # in a live segment of the spool only
        # A tmp cleaner removes what it finds old: every file but the live segment (a lock file, say).
        for path in spool.iterdir():
            if path.suffix != ".seg":
                path.unlink()
        flags = ("--http", f"127.0.0.1:{free_port()}", "--grpc", "none", "--spool-dir", str(spool))
        second = cli("collector", "--location", local_location, *flags)
        assert_one_line_failure(second, "collector", f"spool {spool} is in use by another collector")
        acknowledged |= first.export(2)  # the first goes on as before
    finally:
        assert first.stop() == 0, log.read_text()

    written = span_id_counts(local_location, expect=len(acknowledged))
    assert set(written) == acknowledged
    assert set(written.values()) == {1}  # written by the first only: the second replayed nothing
    assert not list(spool.glob("*.seg"))


def test_a_full_spool_disk_then_sigkill_loses_no_acknowledged_span_and_writes_no_rejected_one(local_location, tmp_path):
    log = tmp_path / "log"
    with tmpfs(tmp_path / "disk", "1m") as disk:
        spool = disk / "spool"
        first = CollectorProcess(local_location, spool, log, "--flush-age", "3600")
        try:
            acknowledged, rejected = send_until_full(first, disk)
            for _ in range(5):  # room again: these follow the cut-off request in the same segment
                status, ids = first.post(40)
                assert status == 200
                acknowledged |= ids
        finally:
            first.kill()
        assert rows(local_location, timeout=0) == []  # everything was in the spool only

        second = CollectorProcess(local_location, spool, log, "--flush-age", "0.2")
        try:
            replayed = span_id_counts(local_location, expect=len(acknowledged))
            # Again with batches rolled and written from memory while the disk is full.
            more_acknowledged, more_rejected = send_until_full(second, disk)
            status, ids = second.post(40)
            assert status == 200
            more_acknowledged |= ids
        finally:
            assert second.stop() == 0, log.read_text()
        assert not list(spool.glob("*.seg"))

    assert set(replayed) == acknowledged, log.read_text()
    written = span_id_counts(local_location, expect=len(acknowledged) + len(more_acknowledged))
    assert set(written) == acknowledged | more_acknowledged
    assert not set(written) & (rejected | more_rejected)
    assert set(written.values()) == {1}  # nobody retried: no duplicate either


@contextlib.contextmanager
def chattr(path: Path, flag: str) -> Iterator[None]:
    """``chattr +flag path`` for the duration (as root, chmod would not stop the collector)."""
    done = subprocess.run(["chattr", f"+{flag}", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +{flag} is not supported here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", f"-{flag}", str(path)], check=True)


def wait_for(condition, timeout: float = 15.0) -> None:
    """Polls ``condition()`` until it is true; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_an_undeletable_spool_folder_never_stops_ingestion_and_a_restart_only_duplicates(local_location, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chattr needs root")
    log = tmp_path / "log"
    spool = tmp_path / "spool"
    first = CollectorProcess(local_location, spool, log, "--flush-age", "0.2")
    try:
        with chattr(spool, "i"):  # no segment can be created: 503, and no phantom segment is counted
            assert [first.post(3)[0] for _ in range(3)] == [503, 503, 503]
            assert first.metric("spool_segments") == 0
        acknowledged: set[str] = set()
        with chattr(spool, "a"):  # segments are created but cannot be removed once their batch is written
            for sent in range(1, 9):  # twice max_pending_batches: a stopped writer thread would turn these away
                status, ids = first.post(3)
                assert status == 200
                acknowledged |= ids
                # A batch each (flush age 0.2 s): the next request once this one's is written and left behind.
                wait_for(lambda sent=sent: first.metric("spool_unremoved_segments") == sent)
            assert set(span_id_counts(local_location, expect=len(acknowledged))) == acknowledged
            wait_for(lambda: first.metric("spool_unremoved_segments") == 8)
            assert first.metric("spool_segments") == 8
            assert first.metric("write_errors_total") >= 8
            written_files = first.metric("files_written_total")
        wait_for(lambda: first.metric("spool_segments") == 0)  # removed on retry, not written again
        assert first.metric("files_written_total") == written_files
        status, ids = first.post(3)
        assert status == 200
        acknowledged |= ids
        assert set(span_id_counts(local_location, expect=len(acknowledged))) == acknowledged

        with chattr(spool, "a"):
            status, ids = first.post(3)
            assert status == 200
            acknowledged |= ids
            wait_for(lambda: len(rows(local_location, timeout=0)) == len(acknowledged))
            wait_for(lambda: first.metric("spool_unremoved_segments") == 1)
            first.kill()  # its segment stays: the restart replays what is written already
    finally:
        if first.process.poll() is None:
            first.kill()

    second = CollectorProcess(local_location, spool, log, "--flush-age", "0.2")
    try:
        counts = span_id_counts(local_location, expect=len(acknowledged) + 3)
    finally:
        assert second.stop() == 0, log.read_text()
    assert set(counts) == acknowledged
    assert sorted(counts.values()).count(2) == 3  # the replayed request only, written twice
    with connect(local_location) as con:
        (latest,) = con.execute("select count(*) from job_runs_latest").fetchone()
    assert latest == len(acknowledged)  # the views collapse the duplicates
    assert not list(spool.glob("*.seg"))
