"""Rollups of closed days: small tables of per-day summaries that the views read instead of the rows.

A day is closed once it is over by more than the future tolerance of the receiver's clock (:data:`ROLLUP_LAG_DAYS`):
the rows of a day mostly arrive by then. The rollup of a closed day is made by the views themselves, from that
day's files only (:func:`otel_datasink.local.connect` with ``days`` and no rollups): ``dataset_status_daily`` holds
the rows of the view ``dataset_status_days`` of the day, which ``dataset_status_latest`` merges, so the answers are
those of the rows by construction (the same SQL, the same dedup and tie rules).

Which inputs a rollup summarised is in its file's name: ``<fingerprint>.parquet``, the fingerprint of the names and
sizes of the day's data files (:func:`fingerprint`). :func:`roll_up` (run by :func:`otel_datasink.compact.compact`,
under the compaction lock, after the partitions are compacted) makes every closed day's rollup whose file is not
there yet, in day order: a day never rolled up, or one whose files changed since (a late row of a replay or a
backfill, a compaction of its files). The new file is put whole through the writer, then the day's older rollup
files are deleted; the views take each day's newest rollup (``rolled_up_at``), so a reader in between counts
nothing twice. Idempotent (the same inputs give the same name, skipped), resumable (a day is done when its file is
there), and two compactions never roll up at once (the lock).

The views read a day's rollup up to the last rolled-up day and the rows after it: a late row of a closed day is in
the answers once the next compaction has rebuilt that day's rollup (run ``compact`` after a replay or a backfill).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa

from otel_datasink.lease import Held
from otel_datasink.location import is_data_file, partition_of_folder
from otel_datasink.schema import (
    DATASET_STATUS_DAILY_TABLE,
    DATASET_STATUS_TABLE,
    FUTURE_TOLERANCE_DAYS,
    PARTITION_COLUMN,
    ROLLUPS,
)
from otel_datasink.writer import Writer

ROLLUP_LAG_DAYS = FUTURE_TOLERANCE_DAYS + 1
"""A day is closed, and rolled up, once it is this many days before today (UTC): with a tolerance of one day,
the day before yesterday and older."""
SOURCES = {DATASET_STATUS_DAILY_TABLE: DATASET_STATUS_TABLE}
"""Rollup table -> the table of rows it summarises (a day of one from the same day of the other)."""
VIEW_OF = {DATASET_STATUS_DAILY_TABLE: "dataset_status_days"}
"""Rollup table -> the view whose rows of a day it stores."""
_ALL_DAYS = 365_000
"""The dataset window of the views a rollup is computed with: every day, whatever its age."""


@dataclasses.dataclass
class RolledUp:
    """What a rollup step did."""

    days_written: int = 0
    days_current: int = 0
    """Closed days whose rollup was already that of their files."""
    files_removed: int = 0


def closed_before(today: date | None = None) -> str:
    """The first ``dt`` that is not closed: days before it are rolled up."""
    today = today or datetime.now(timezone.utc).date()
    return (today - timedelta(days=ROLLUP_LAG_DAYS - 1)).isoformat()


def fingerprint(files: Iterable[tuple[str, int]]) -> str:
    """The name of a rollup made from data files (their names and sizes): the same files, the same name."""
    lines = sorted(f"{name.rsplit('/', 1)[-1]}\t{size}" for name, size in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:24] + ".parquet"


def _files_by_day(writer: Writer, table: str) -> dict[str, list[tuple[str, int]]]:
    """A table's data files per ``dt``, by one listing of the table's folder."""
    folder = writer.path(table)
    if not writer.fs.exists(folder):
        return {}
    days: dict[str, list[tuple[str, int]]] = {}
    for path, info in writer.fs.find(folder, detail=True).items():
        day = partition_of_folder(path.rsplit("/", 1)[0])
        if day is not None and is_data_file(path):
            days.setdefault(day, []).append((path, int(info.get("size") or 0)))
    return days


def roll_up(writer: Writer, *, held: Held, today: date | None = None) -> RolledUp:
    """Makes the rollup of every closed day whose files changed since (or that has none), in day order; returns
    what it did. The caller holds the compaction lock (``held``, checked before each put and delete)."""
    result = RolledUp()
    cutoff = closed_before(today)
    for rollup, source in SOURCES.items():
        writer.fs.invalidate_cache()
        sources = _files_by_day(writer, source)
        rollups = _files_by_day(writer, rollup)
        pending = {}
        for day in sorted(d for d in sources if d < cutoff):
            name = fingerprint(sources[day])
            if any(path.endswith(f"/{name}") for path, _ in rollups.get(day, [])):
                result.days_current += 1
            else:
                pending[day] = name
        if not pending:
            continue
        computed = compute(writer, rollup, tuple(pending))
        for day, name in pending.items():
            held.check()
            path = f"{writer.path(rollup, day)}/{name}"
            writer.put(path, writer.encode_tables([computed[day]]), deadline=time.monotonic() + writer.options.timeout)
            result.days_written += 1
            held.check()
            for old, _ in rollups.get(day, []):
                if old != path:
                    writer.fs.rm_file(old)
                    result.files_removed += 1
    return result


def compute(writer: Writer, rollup: str, days: tuple[str, ...]) -> dict[str, pa.Table]:
    """The rollup of each of ``days`` (``dt`` values with files), as Arrow tables of its schema: the view of
    :data:`VIEW_OF` over those days' files, rollups left out (a day's old rollup is no input of its new one)."""
    from otel_datasink import local
    from otel_datasink.catalog import ViewParameters

    schema = ROLLUPS[rollup]
    parameters = ViewParameters(dataset_window_days=_ALL_DAYS)
    options = {field.name: getattr(writer.options, field.name) for field in dataclasses.fields(writer.options)}
    con = local.connect(parameters=parameters, rollups=False, days=days, **options)
    try:
        columns = ", ".join(f'"{name}"' for name in schema.names if name != "rolled_up_at")
        # current_timestamp to the millisecond: the column's precision (a rollup newer than another is so there).
        rows = con.sql(
            f"SELECT {columns}, date_trunc('millisecond', current_timestamp) AS rolled_up_at, {PARTITION_COLUMN} "
            f"FROM {VIEW_OF[rollup]}"
        ).to_arrow_table()
    finally:
        con.close()
    by_day: dict[str, list[int]] = {day: [] for day in days}
    for index, day in enumerate(rows.column(PARTITION_COLUMN).to_pylist()):
        by_day.setdefault(day, []).append(index)
    body = rows.drop_columns([PARTITION_COLUMN]).cast(schema)
    return {day: body.take(pa.array(indices, pa.int64())) for day, indices in by_day.items()}
