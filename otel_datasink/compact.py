"""Compaction: each partition's small Parquet files rewritten into files of about a target size.

Per-job flushes leave many small files per ``dt`` partition; Athena and DuckDB pay per file. Compaction
groups a partition's files (in name order, so by time) into bins of about ``target_size`` bytes and rewrites
each bin of two or more files as one file, with the same rows, the same schema and the writer's Parquet
options. Safe while writers and readers run, and resumable after a crash:

1. a manifest ``_compaction-<id>.json`` listing the bin's input files and its output is put in the partition
   (names starting with ``_`` are hidden from Athena, pyarrow and the ``*.parquet`` globs);
2. the output file is put whole (:meth:`~otel_datasink.writer.Writer.put`: one S3 PUT, or rename on disk);
3. the inputs listed in the manifest are deleted: only those, so a file a writer adds meanwhile is never
   touched, and compacting today's partition is allowed;
4. the manifest is deleted.

A crash between 2 and 3 leaves rows twice in storage; the views already collapse duplicates, so no view
answer changes, and the next run finds the manifest, sees its output exists and finishes step 3. A crash
before 2 leaves the inputs whole; the next run drops the stale manifest, removes the output's half-written
temporary file (local disk: see :data:`TEMPORARY_MAX_AGE`) and plans again.

One compaction per location at a time: :func:`compact` holds the location's :data:`COMPACTION_LOCK`
(:func:`otel_datasink.lease.hold`: a flock locally, a renewed lease object on S3) and raises
:class:`~otel_datasink.lease.Busy` when another compaction holds it. Two compactions of the same files would
each write their rows and each delete the inputs: rows twice in storage for good. Should two ever overlap all
the same (an S3 lease taken over from a compaction that went on after failing to renew it for a whole lease),
a bin's output is named after its inputs (:func:`output_name`): the same files compacted twice are one object,
and a compaction whose lease was taken over stops before writing an output or deleting an input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from otel_datasink.lease import Held, Lock, hold
from otel_datasink.location import file_stamp, is_data_file, partition_folder, partition_of_folder, temporary_target
from otel_datasink.rollup import roll_up
from otel_datasink.schema import TABLES
from otel_datasink.sizes import human_size
from otel_datasink.writer import Writer

_logger = logging.getLogger(__name__)

DEFAULT_TARGET_SIZE = 128 * 1024 * 1024
MANIFEST_PREFIX = "_compaction-"
COMPACTION_LOCK = Lock("_compaction.lock", what="compaction", who="compaction")
"""The location's compaction lock: ``<location>/_compaction.lock`` (hidden from readers by its ``_``)."""
TEMPORARY_MAX_AGE = 3600.0
"""Seconds after which a hidden temporary file (``.<name>.<id>.tmp``, local disk) is a killed writer's: a write's
temporary lives for that write only (a flush's file is written in well under a second), so one left unchanged for
an hour belongs to no live writer and a compaction removes it. A compaction's own are removed at once."""
_ROW_GROUP_ROWS = 1_000_000


@dataclasses.dataclass
class Bin:
    """Files of one partition to be rewritten as one."""

    table: str
    dt: str
    inputs: list[str]
    """Paths of the input files."""
    size: int
    """Their total size in bytes."""


@dataclasses.dataclass
class Plan:
    """What a compaction will do: bins to rewrite, and manifests of interrupted runs to finish."""

    bins: list[Bin]
    pending: list[str]
    """Manifests left by an interrupted compaction."""
    leftovers: list[str]
    """Temporary files left by killed writes (:data:`TEMPORARY_MAX_AGE`) or a killed compaction."""
    partitions: int
    files: int
    """Parquet files in the partitions looked at."""

    def describe(self) -> str:
        """A human-readable plan, one line per bin."""
        lines = [
            f"{len(self.bins)} file(s) to write from {sum(len(b.inputs) for b in self.bins)} of {self.files} file(s) "
            f"in {self.partitions} partition(s); {len(self.pending)} interrupted compaction(s) to finish"
            + (f"; {len(self.leftovers)} leftover temporary file(s) to remove" if self.leftovers else "")
        ]
        for manifest in self.pending:
            lines.append(f"  finish {manifest}")
        for temporary in self.leftovers:
            lines.append(f"  remove {temporary}")
        for item in self.bins:
            lines.append(
                f"  {item.table}/{partition_folder(item.dt)}: {len(item.inputs)} files, {human_size(item.size)} -> 1"
            )
        return "\n".join(lines)


@dataclasses.dataclass
class Compacted:
    """What a compaction did."""

    files_before: int = 0
    files_after: int = 0
    files_written: int = 0
    files_removed: int = 0
    bytes_written: int = 0
    resumed: int = 0
    temporaries_removed: int = 0
    rollups_written: int = 0
    """Days whose rollup was written (:mod:`otel_datasink.rollup`): closed days new or changed since."""


def partitions(
    writer: Writer,
    tables: Iterable[str],
    dt: str | None = None,
    older_than_days: int | None = None,
    today: date | None = None,
) -> list[tuple[str, str]]:
    """The (table, dt) partitions to look at: one day, those older than N days, or all."""
    today = today or datetime.now(timezone.utc).date()
    cutoff = (today - timedelta(days=older_than_days)).isoformat() if older_than_days is not None else None
    found = []
    for table in tables:
        folder = writer.path(table)
        if not writer.fs.exists(folder):
            continue
        for entry in writer.fs.ls(folder, detail=False):
            day = partition_of_folder(entry)
            if day is None:
                continue
            if dt is not None and day != dt:
                continue
            if cutoff is not None and day >= cutoff:
                continue
            found.append((table, day))
    return sorted(found)


def plan(writer: Writer, parts: list[tuple[str, str]], target_size: int) -> Plan:
    """Bins of each partition's files: consecutive files (by name, so by time) up to ``target_size`` bytes; and
    the manifests of interrupted compactions and the leftover temporary files (:func:`_is_leftover`) found.

    A file of ``target_size`` or more is left alone, and so is a bin of one file.
    """
    bins: list[Bin] = []
    pending: list[str] = []
    leftovers: list[str] = []
    files = 0
    now = time.time()
    for table, dt in parts:
        folder = writer.path(table, dt)
        with _naming("list", folder):
            entries = sorted(writer.fs.ls(folder, detail=True), key=lambda e: e["name"])
        manifests = [e["name"] for e in entries if _base(e["name"]).startswith(MANIFEST_PREFIX)]
        pending.extend(manifests)
        outputs = {record["output"] for record in (_read_manifest(writer, m) for m in manifests) if record}
        leftovers.extend(e["name"] for e in entries if _is_leftover(e, outputs, now))
        parquet = [e for e in entries if is_data_file(e["name"])]
        files += len(parquet)
        current: list[dict] = []
        size = 0
        for entry in parquet:
            entry_size = int(entry.get("size") or 0)
            if entry_size >= target_size:
                continue
            if current and size + entry_size > target_size:
                bins.append(Bin(table, dt, [e["name"] for e in current], size))
                current, size = [], 0
            current.append(entry)
            size += entry_size
        if current:
            bins.append(Bin(table, dt, [e["name"] for e in current], size))
    return Plan([b for b in bins if len(b.inputs) > 1], pending, leftovers, len(parts), files)


def _is_leftover(entry: dict, outputs: set[str], now: float) -> bool:
    """Whether a listed file is a temporary (``.<file>.<id>.tmp``) no live write will finish: a compaction's, of
    its manifest or of an output a manifest names (the lock is held: no other compaction runs), or anyone's left
    unchanged for :data:`TEMPORARY_MAX_AGE`."""
    target = temporary_target(_base(entry["name"]))
    if target is None:
        return False
    mtime = entry.get("mtime")
    return (
        target.startswith(MANIFEST_PREFIX)
        or target in outputs
        or (mtime is not None and now - float(mtime) > TEMPORARY_MAX_AGE)
    )


def _read_manifest(writer: Writer, manifest: str) -> dict | None:
    """A manifest's record (its inputs and output), or None when it is gone (finished meanwhile)."""
    try:
        with _naming("read", manifest):
            return json.loads(writer.fs.cat_file(manifest))
    except FileNotFoundError:
        return None


def finish_pending(writer: Writer, manifest: str) -> int:
    """Completes (or drops) the compaction a manifest records; returns the input files removed."""
    record = _read_manifest(writer, manifest)
    if record is None:
        return 0
    folder = manifest.rsplit("/", 1)[0]
    removed = 0
    if writer.fs.exists(f"{folder}/{record['output']}"):
        # The output landed: its rows are all there, so the inputs can go.
        for name in record["inputs"]:
            removed += _remove(writer, f"{folder}/{name}")
    else:
        _logger.info("compaction of %s was interrupted before its output landed: planning it again", folder)
    _remove(writer, manifest)
    return removed


def compact_bin(
    writer: Writer, item: Bin, *, held: Held, deadline_s: float, hook: Callable[[str], None] | None = None
) -> int:
    """Rewrites one bin as one file (manifest, output, delete inputs, delete manifest); returns bytes written.

    ``held``: the compaction lock, checked before the output is put and before the inputs are deleted (raises
    :class:`~otel_datasink.lease.LeaseLost`: the compaction that took the lease over finishes this bin).
    """
    folder = writer.path(item.table, item.dt)
    output = output_name(item.inputs)
    manifest = f"{folder}/{MANIFEST_PREFIX}{uuid.uuid4().hex}.json"
    record = {"inputs": [_base(p) for p in item.inputs], "output": output, "created_at": time.time()}
    writer.put(manifest, json.dumps(record).encode(), deadline=time.monotonic() + deadline_s)
    data = _rewrite(writer, item)
    held.check()
    writer.put(f"{folder}/{output}", data, deadline=time.monotonic() + deadline_s)
    if hook is not None:
        hook("output_written")
    held.check()
    for path in item.inputs:
        _remove(writer, path)
    _remove(writer, manifest)
    return len(data)


def output_name(inputs: Iterable[str]) -> str:
    """The name of the file a bin of ``inputs`` is rewritten as: the same for the same inputs, so that files
    compacted twice make one object (written twice, with the same rows), never two copies of their rows.

    It starts with the newest input's creation time, as the writer's names do: it sorts among its inputs' peers.
    """
    names = sorted(_base(path) for path in inputs)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    return f"{file_stamp(names[-1]) or 'compacted'}-{digest}.parquet"


def _rewrite(writer: Writer, item: Bin) -> bytes:
    schema = TABLES[item.table]
    buffer = io.BytesIO()
    # Row groups of up to _ROW_GROUP_ROWS rows, whatever the sizes of the inputs.
    with pq.ParquetWriter(buffer, schema, **writer.parquet_options()) as out:
        pending: list[pa.Table] = []
        rows = 0
        for path in item.inputs:
            # Read on this thread only: Arrow's worker threads (read_table's read-ahead, a threaded decode) may
            # drop their last hold of buffers read from this Python file after the read returned; if that is
            # while the interpreter exits, the process aborts ("terminate called without an active exception",
            # seen under load). The files are a flush's worth each: one thread decodes them fast enough.
            with _naming("read", path), writer.fs.open(path, "rb") as handle, pq.ParquetFile(handle) as parquet:
                table = parquet.read(use_threads=False)
            pending.append(_conform(table, schema))
            rows += table.num_rows
            if rows >= _ROW_GROUP_ROWS:
                out.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
                pending, rows = [], 0
        if pending:
            out.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
    return buffer.getvalue()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    # Files written by an older version may lack a newer column: it is NULL in the compacted file.
    columns = [
        table.column(field.name).cast(field.type)
        if field.name in table.column_names
        else pa.nulls(table.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _remove(writer: Writer, path: str) -> int:
    try:
        with _naming("remove", path):
            writer.fs.rm_file(path)
        return 1
    except FileNotFoundError:
        return 0


@contextlib.contextmanager
def _naming(action: str, path: str) -> Iterator[None]:
    """Raises an OSError of the store again as one saying what failed on which file, and why: s3fs words a missing
    object as its path alone, and a refusal ("Access Denied") or a missing bucket without the object. A file not
    found stays a FileNotFoundError (a removal tolerates it)."""
    try:
        yield
    except (OSError, pa.ArrowException) as error:
        kind = FileNotFoundError if isinstance(error, FileNotFoundError) else OSError
        raise kind(f"cannot {action} {path}: {_cause(error, path)}") from error


_NO_SUCH_KEY = "The specified key does not exist."
"""S3's message for NoSuchKey, which s3fs raises as FileNotFoundError when a read finds the object gone."""


def _cause(error: Exception, path: str) -> str:
    # s3fs words a missing object as its path (a HEAD), or as S3's NoSuchKey text (a GET of an object removed after
    # it was opened); a missing bucket is a FileNotFoundError too, and is not this.
    if isinstance(error, FileNotFoundError) and (error.errno == errno.ENOENT or str(error) in (path, _NO_SUCH_KEY)):
        return "it no longer exists (removed since this compaction listed it)"
    return (error.strerror if isinstance(error, OSError) else None) or str(error) or type(error).__name__


def _base(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def count_files(writer: Writer, parts: list[tuple[str, str]]) -> int:
    """The Parquet files in the given partitions now."""
    return sum(
        1 for table, dt in parts for path in writer.fs.ls(writer.path(table, dt), detail=False) if is_data_file(path)
    )


def compaction_lock(writer: Writer) -> contextlib.AbstractContextManager[Held]:
    """Holds the location's :data:`COMPACTION_LOCK` for the block; raises :class:`~otel_datasink.lease.Busy` at once
    when another compaction holds it."""
    return hold(writer, COMPACTION_LOCK)


def compact(
    writer: Writer,
    *,
    tables: Iterable[str] | None = None,
    dt: str | None = None,
    older_than_days: int | None = None,
    target_size: int = DEFAULT_TARGET_SIZE,
    progress: Callable[[int], object] | None = None,
    hook: Callable[[str], None] | None = None,
    result: Compacted | None = None,
    held: Held | None = None,
    rollup: bool = True,
) -> Compacted:
    """Finishes interrupted compactions and removes leftover temporary files, then compacts the chosen partitions;
    returns what it did.

    Under the location's compaction lock: ``held`` when the caller holds it (:func:`compaction_lock`), else taken
    here (raises :class:`~otel_datasink.lease.Busy` when another compaction holds it). ``progress`` is called with
    the bytes of each bin done; ``hook`` (tests) with each step's name. A ``result`` passed in is filled in as the
    compaction goes, so that a caller whose compaction raised (or was interrupted: KeyboardInterrupt) still knows
    what was done.

    Then, with ``rollup``, the closed days' rollups are made where the days' files changed
    (:func:`otel_datasink.rollup.roll_up`), still under the lock: after the files are compacted, so that a
    compacted day's rollup names its final files.
    """
    result = Compacted() if result is None else result
    with compaction_lock(writer) if held is None else contextlib.nullcontext(held) as lock:
        writer.fs.invalidate_cache()
        parts = partitions(writer, tables or TABLES, dt, older_than_days)
        found = plan(writer, parts, target_size)
        for manifest in found.pending:
            result.files_removed += finish_pending(writer, manifest)
            result.resumed += 1
        for temporary in found.leftovers:
            result.temporaries_removed += _remove(writer, temporary)
        writer.fs.invalidate_cache()
        work = plan(writer, parts, target_size)
        result.files_before = work.files
        for item in work.bins:
            result.bytes_written += compact_bin(writer, item, held=lock, deadline_s=writer.options.timeout, hook=hook)
            result.files_written += 1
            result.files_removed += len(item.inputs)
            if progress is not None:
                progress(item.size)
        writer.fs.invalidate_cache()
        result.files_after = count_files(writer, parts)
        if rollup:
            result.rollups_written = roll_up(writer, held=lock).days_written
    return result
