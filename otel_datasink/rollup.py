"""Rollups of closed days: small tables of per-day summaries that the views read instead of the rows.

A day is closed once it is over by more than the future tolerance of the receiver's clock (:data:`ROLLUP_LAG_DAYS`):
the rows of a day mostly arrive by then. A closed day's rollup is made by the views themselves, over that day's files
only (:func:`otel_datasink.local.connect` without rollups, :func:`otel_datasink.local.read_days`), so its answers
are those of the rows by construction (the same SQL, the same dedup and tie rules):

- ``job_runs_daily``: the rows of ``runtime_trend`` of runs started that day, over that day's ``job_runs`` files
  and the next day's (a run that ends after midnight); percentiles are per day, so a day's row holds them exactly.
- ``dataset_status_daily``: the rows of ``dataset_status_days`` of that day, over that day's ``dataset_status``
  files (the updates of one instant are all in one day), which ``dataset_status_latest`` merges: a dataset's state
  over 400 days is 400 small rows, not every update.

Which inputs a rollup summarised is in its file's name: ``<fingerprint>.parquet``, the fingerprint of the names and
sizes of the data files it read (:func:`fingerprint`). :func:`roll_up` (run by :func:`otel_datasink.compact.compact`,
under the compaction lock, after the partitions are compacted) makes every closed day's rollup whose file is not
there yet, in day order: a day never rolled up, or one whose files changed since (a late row of a replay or a
backfill, a compaction of its files). The new file is put whole through the writer, then the day's older rollup
files are deleted; the views take each day's newest rollup (``rolled_up_at``), so a reader in between counts
nothing twice. Idempotent (the same inputs give the same name, skipped), resumable (a day is done when its file is
there), and two compactions never roll up at once (the lock).

The views read the rollups up to the last rolled-up day and the rows after it (a scalar bound, with which DuckDB
prunes the rolled-up days' files). A late row of a closed day is in the answers once the next compaction has
rebuilt that day's rollup: run ``compact`` after a replay or a backfill. A run whose rows are more than a day
apart (it ran over a day, or a copy of its end came days later) is counted by its day's rollup as that day's and
the next day's rows tell it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pyarrow as pa

from otel_datasink.lease import Held
from otel_datasink.location import is_data_file, open_location, partition_of_folder, table_path
from otel_datasink.schema import (
    DATASET_STATUS_DAILY_TABLE,
    DATASET_STATUS_TABLE,
    FUTURE_TOLERANCE_DAYS,
    JOB_RUNS_DAILY_TABLE,
    JOB_RUNS_TABLE,
    PARTITION_COLUMN,
    ROLLUPS,
)
from otel_datasink.writer import Writer

if TYPE_CHECKING:
    import duckdb

    from otel_datasink.config import Options

ROLLUP_LAG_DAYS = FUTURE_TOLERANCE_DAYS + 1
"""A day is closed once it is this many days before today (UTC): with a tolerance of one day, the day before
yesterday and older. A rollup that reads the next day's files too waits for that one to be closed."""
_ALL_DAYS = 365_000
"""The windows of the views a rollup is computed with: every day, whatever its age."""


@dataclasses.dataclass(frozen=True)
class Rollup:
    """How a rollup table is made: from which table's files, by which view, over how many days."""

    table: str
    source: str
    """The table of rows it summarises."""
    view: str
    """The view whose rows of a day it stores (rollups left out: on the rows alone)."""
    day_column: str
    """The view's column that says the day of a row."""
    span_days: int
    """The source's partitions a day's rollup reads: that day and the ``span_days - 1`` after it."""

    def inputs(self, day: str) -> list[str]:
        """The ``dt`` partitions the rollup of ``day`` reads."""
        first = date.fromisoformat(day)
        return [(first + timedelta(days=offset)).isoformat() for offset in range(self.span_days)]

    def days(self, sources: Iterable[str]) -> list[str]:
        """The days, in order, whose rollup reads any of the partitions ``sources`` (a run that started on a day
        with no file of its own and ended the next is that day's)."""
        return sorted(
            {
                (date.fromisoformat(day) - timedelta(days=offset)).isoformat()
                for day in sources
                for offset in range(self.span_days)
            }
        )


ROLLUP_TABLES = (
    # A run's rows are those of the day it started and of the day it ended, mostly the same or the next.
    Rollup(JOB_RUNS_DAILY_TABLE, JOB_RUNS_TABLE, "runtime_trend", "run_date", 2),
    # All the updates of one instant are in one day: a day's rows tell its summary.
    Rollup(DATASET_STATUS_DAILY_TABLE, DATASET_STATUS_TABLE, "dataset_status_days", "dt", 1),
)
"""The rollup tables of :data:`~otel_datasink.schema.ROLLUPS`, each with how it is made."""


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
    """The name of a rollup made from data files (their paths and sizes): the same files, the same name."""
    lines = sorted(f"{'/'.join(name.rsplit('/', 2)[-2:])}\t{size}" for name, size in files)
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
    for rollup in ROLLUP_TABLES:
        writer.fs.invalidate_cache()
        sources = _files_by_day(writer, rollup.source)
        rollups = _files_by_day(writer, rollup.table)
        pending: dict[str, tuple[str, list[str]]] = {}
        for day in rollup.days(sources):
            if rollup.inputs(day)[-1] >= cutoff:
                break
            inputs = [each for each in rollup.inputs(day) if each in sources]
            name = fingerprint(file for each in inputs for file in sources[each])
            current = f"{writer.path(rollup.table, day)}/{name}"
            if any(path == current for path, _ in rollups.get(day, [])):
                result.days_current += 1
                # A rollup replaced by a compaction that stopped before deleting it: the views read the newest.
                result.files_removed += _remove_others(writer, rollups.get(day, []), current, held)
            else:
                pending[day] = (name, inputs)
        if not pending:
            continue
        for day, table in compute(writer, rollup, {day: inputs for day, (_, inputs) in pending.items()}):
            held.check()
            path = f"{writer.path(rollup.table, day)}/{pending[day][0]}"
            writer.put(path, writer.encode_tables([table]), deadline=time.monotonic() + writer.options.timeout)
            result.days_written += 1
            result.files_removed += _remove_others(writer, rollups.get(day, []), path, held)
    return result


def _remove_others(writer: Writer, files: list[tuple[str, int]], kept: str, held: Held) -> int:
    """Deletes a day's rollup files but ``kept`` (its rollup of the day's files now); returns how many."""
    removed = 0
    for path, _ in files:
        if path != kept:
            held.check()
            writer.fs.rm_file(path)
            removed += 1
    return removed


def read_open_days(con: duckdb.DuckDBPyConnection, options: Options) -> None:
    """Points each rolled-up table of rows of ``con`` (a connection of :func:`otel_datasink.local.connect` over
    ``options.location``) at its partitions from its rollup's last day on, where the views that read the rollups
    (``runtime_trend``, ``dataset_status_days`` and ``dataset_status_latest``) read it: they answer the same from
    fewer files (the view's bound prunes them in DuckDB too, but not through ``job_runs_latest``, which the other
    views read over the whole window). For a connection that reads those views only: the others lose the older rows.
    """
    from otel_datasink import local

    fs, root = open_location(options)
    for rollup in ROLLUP_TABLES:
        row = con.execute(f"SELECT max({PARTITION_COLUMN}) FROM {rollup.table}").fetchone()
        last = row[0] if row else None
        if last is None:
            continue
        folder = table_path(root, rollup.source)
        found = (partition_of_folder(path) for path in (fs.ls(folder, detail=False) if fs.isdir(folder) else []))
        local.read_days(con, tuple(sorted(day for day in found if day is not None and day >= last)), (rollup.source,))


def compute(writer: Writer, rollup: Rollup, days: dict[str, list[str]]) -> Iterator[tuple[str, pa.Table]]:
    """The rollup of each day of ``days`` (``dt`` -> the partitions with files it reads), in order, as an Arrow
    table of its schema: the rows of :attr:`Rollup.view` of that day, over those partitions' files alone."""
    from otel_datasink import local
    from otel_datasink.catalog import ViewParameters

    schema = ROLLUPS[rollup.table]
    parameters = ViewParameters(window_days=_ALL_DAYS, dataset_window_days=_ALL_DAYS)
    options = {field.name: getattr(writer.options, field.name) for field in dataclasses.fields(writer.options)}
    con = local.connect(parameters=parameters, rollups=False, days=(), **options)
    try:
        columns = ", ".join(f'"{name}"' for name in schema.names if name != "rolled_up_at")
        # current_timestamp to the millisecond: the column's precision (a rollup newer than another is so there).
        query = (
            f"SELECT {columns}, date_trunc('millisecond', current_timestamp) AS rolled_up_at FROM {rollup.view} "
            f"WHERE CAST({rollup.day_column} AS VARCHAR) = $day"
        )
        for day, inputs in days.items():
            local.read_days(con, tuple(inputs))
            yield day, con.sql(query, params={"day": day}).to_arrow_table().cast(schema)
    finally:
        con.close()
