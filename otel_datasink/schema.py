"""The one Arrow definition of each table; the Parquet files, the Athena DDL and the DuckDB views follow it.

Timestamps are UTC instants in milliseconds, written as Parquet INT64 ``TIMESTAMP(isAdjustedToUTC=true, MILLIS)``,
which Athena engine v3 reads as ``timestamp`` (never INT96). The ``dt`` partition column is not stored in the
files: it is the Hive folder ``dt=YYYY-MM-DD``, the UTC date of ``event_time`` (of ``ingested_at`` when the event
time is too far ahead of it: see :func:`otel_datasink.location.filed_time`).
"""

from __future__ import annotations

import collections
import operator
from typing import Any

import pyarrow as pa

# Typed as DataType so that the field lists below read as (str, DataType) pairs, as pa.schema takes them (mypy
# joins the stubs' StringType, Int64Type, ... to object).
TIMESTAMP: pa.DataType = pa.timestamp("ms", tz="UTC")
ATTRIBUTES: pa.DataType = pa.map_(pa.string(), pa.string())
BOOLEAN: pa.DataType = pa.bool_()
NAMES: pa.DataType = pa.list_(pa.string())
"""A list of names (owners, input datasets): Athena ``array<string>``, DuckDB ``VARCHAR[]``."""
PARTITION_COLUMN = "dt"
"""The Hive partition column: the UTC date (``YYYY-MM-DD``) of each row's
:func:`~otel_datasink.location.filed_time` (its ``event_time``)."""
INGESTED_AT = "ingested_at"
"""The column every front door sets to its own clock when it maps a row: the receiver's clock."""

JOB_RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("job_name", pa.string()),
        ("job_type", pa.string()),
        ("status", pa.string()),
        ("dataset", pa.string()),
        ("event_time", TIMESTAMP),
        ("start_time", TIMESTAMP),
        ("end_time", TIMESTAMP),
        ("duration_ms", pa.int64()),
        ("records_processed", pa.int64()),
        ("error_type", pa.string()),
        ("error_message", pa.string()),
        ("attempt", pa.int64()),
        ("logical_date", TIMESTAMP),
        ("run_type", pa.string()),
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("parent_span_id", pa.string()),
        ("service_name", pa.string()),
        ("attributes", ATTRIBUTES),
        ("ingested_at", TIMESTAMP),
        # Added by issue 18, after the older columns: files written before them read them as NULL.
        ("parent_job_name", pa.string()),
        ("parent_run_id", pa.string()),
        ("owners", NAMES),
        ("inputs", NAMES),
    ]
)
"""``job_runs``: one row per state of a run (STARTED, then SUCCESS or FAILED); duplicates collapse in the views.
``parent_job_name``/``parent_run_id`` name the run it belongs to (a pipeline or DAG run), ``owners`` the job's
owners, ``inputs`` the datasets it read."""

DATASET_STATUS = pa.schema(
    [
        ("dataset", pa.string()),
        ("status", pa.string()),
        ("updated_at", TIMESTAMP),
        ("records_written", pa.int64()),
        ("record_count", pa.int64()),
        ("watermark", TIMESTAMP),
        ("freshness_sla_minutes", pa.int64()),
        ("job_name", pa.string()),
        ("run_id", pa.string()),
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("service_name", pa.string()),
        ("event_time", TIMESTAMP),
        ("ingested_at", TIMESTAMP),
        ("owners", NAMES),  # issue 18: NULL in older files
    ]
)
"""``dataset_status``: one row per update of a dataset by a job run; ``owners`` are the writing run's."""

ALERTS = pa.schema(
    [
        ("incident_id", pa.string()),
        ("kind", pa.string()),
        ("subject", pa.string()),
        ("severity", pa.string()),
        ("state", pa.string()),
        ("opened_at", TIMESTAMP),
        ("notified_at", TIMESTAMP),
        ("targets", pa.string()),
        ("delivered", pa.bool_()),
        ("summary", pa.string()),
        ("details", pa.string()),
        ("event_time", TIMESTAMP),
        ("ingested_at", TIMESTAMP),
    ]
)
"""``alerts``: one row per notification event per target (an incident FIRING or RESOLVED, told to one target,
delivered or not); ``targets`` is that one target with its secrets redacted, ``details`` JSON text. Written by
``otel-datasink alert`` (:mod:`otel_datasink.alerts.incidents`), never by spans."""

JOB_RUNS_TABLE = "job_runs"
DATASET_STATUS_TABLE = "dataset_status"
ALERTS_TABLE = "alerts"
TABLES: dict[str, pa.Schema] = {JOB_RUNS_TABLE: JOB_RUNS, DATASET_STATUS_TABLE: DATASET_STATUS, ALERTS_TABLE: ALERTS}
"""Table name -> schema of its Parquet files (without the ``dt`` partition column)."""
SPAN_TABLES = (JOB_RUNS_TABLE, DATASET_STATUS_TABLE)
"""The tables every job span makes rows of (the pipeline's output). ``dataset_checks`` is made by spans too, and
may be a location's only table (dbt test nodes' OpenLineage events are checks, not runs)."""

DATASET_CHECKS = pa.schema(
    [
        ("dataset", pa.string()),
        ("check_name", pa.string()),
        ("status", pa.string()),
        ("assertion", pa.string()),
        ("column_name", pa.string()),
        ("actual", pa.string()),
        ("expected", pa.string()),
        ("severity", pa.string()),
        ("checked_at", TIMESTAMP),
        ("job_name", pa.string()),
        ("run_id", pa.string()),
        ("attempt", pa.int64()),
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("event_time", TIMESTAMP),
        ("ingested_at", TIMESTAMP),
    ]
)
"""``dataset_checks``: one row per result of a data-quality check of a dataset (status PASSED or FAILED) by a job
run: a ``dataset.check`` span event, an OpenLineage ``dataQualityAssertions`` assertion. ``actual`` and
``expected`` are text (a count, a ratio, a date: as the producer gave them)."""
DATASET_CHECKS_TABLE = "dataset_checks"
TABLES[DATASET_CHECKS_TABLE] = DATASET_CHECKS

SLA_RESULTS = pa.schema(
    [
        ("subject", pa.string()),
        ("kind", pa.string()),
        ("period_start", TIMESTAMP),
        ("deadline", TIMESTAMP),
        ("met", pa.bool_()),
        ("met_at", TIMESTAMP),
        ("late_by_minutes", pa.int64()),
        ("run_id", pa.string()),
        ("rule", pa.string()),
        ("evaluated_at", TIMESTAMP),
        ("event_time", TIMESTAMP),
        ("ingested_at", TIMESTAMP),
    ]
)
"""``sla_results``: one row per verdict on one period of an SLA of a job or dataset (``subject``): ``kind`` is the
rule's key (``deadline``, ``within``, ``max_duration``), the period starts at ``period_start`` and is due at
``deadline``; ``met`` whether it was kept, ``met_at`` when the work was done (NULL: not yet), ``late_by_minutes``
how late it was done (0 when met), ``run_id`` the run that did it, ``rule`` the promise in words (``07:00
Europe/Berlin``). A period's first verdict is written once its deadline passed; a later one only corrects it (the
work came late, or a replayed row shows it was done in time): the view ``sla_verdicts`` keeps the latest. Written by
``otel-datasink alert`` (:mod:`otel_datasink.alerts.sla`), never by spans; ``event_time`` is ``evaluated_at``."""
SLA_RESULTS_TABLE = "sla_results"
TABLES[SLA_RESULTS_TABLE] = SLA_RESULTS
CHECK_PASSED = "PASSED"
CHECK_FAILED = "FAILED"

Rows = dict[str, list[dict[str, Any]]]
"""Table name -> rows (dicts keyed by column, timestamps as epoch milliseconds): what the mapping gives and the
writer takes."""

_ROW_TYPES = {table: pa.struct(list(schema)) for table, schema in TABLES.items()}

STATUS_STARTED = "STARTED"
STATUS_SUCCESS = "SUCCESS"
STATUS_FAILED = "FAILED"


def to_arrow(table: str, rows: list[dict]) -> pa.Table:
    """Rows (dicts keyed by column, timestamps as epoch milliseconds) as an Arrow table of ``table``'s schema."""
    schema = TABLES[table]
    try:
        # Dict rows convert in one C++ pass, keys to fields (a missing key is a null).
        # pyarrow-stubs type pa.array of a struct type as Array, not StructArray (what it returns).
        return pa.Table.from_struct_array(pa.array(rows, type=_ROW_TYPES[table]))  # type: ignore[arg-type]
    except pa.ArrowTypeError:  # rows of another Mapping type: column by column
        columns = [[row.get(name) for row in rows] for name in schema.names]
    return pa.Table.from_arrays(
        [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)], schema=schema
    )


# --- times ahead of the receiver's clock -----------------------------------------------------------------------

FUTURE_TOLERANCE_DAYS = 1
"""How far ahead of the receiver's clock (a row's ``ingested_at``) a row's times may be: clocks drift and time zones
get mixed up by hours, never by more than a day. A time further ahead is a broken clock or a bad value (year 2554,
9999-12-31): the row is kept as received (filed under its ``ingested_at``'s date if its event time is that far ahead:
:func:`~otel_datasink.location.filed_time`), counted (:func:`count_future_dated`), and never a run's latest state, a
dataset's latest update or a ``data_as_of`` in the views (``sql/views.sql``, which list such rows in the view
``future_dated_rows``)."""
FUTURE_TOLERANCE_MS = FUTURE_TOLERANCE_DAYS * 86_400_000

RECEIVED_TIMES: dict[str, tuple[str, ...]] = {
    JOB_RUNS_TABLE: ("event_time", "start_time", "end_time", "logical_date"),
    DATASET_STATUS_TABLE: ("updated_at", "watermark"),
    DATASET_CHECKS_TABLE: ("checked_at", "event_time"),
}
"""The times of a table's rows that come from the sender, and are judged against the receiver's clock
(``alerts`` rows are made on the receiver's own clock: nothing to judge)."""


def count_future_dated(rows: Rows) -> collections.Counter[str]:
    """Table -> how many of ``rows`` (as the mapping makes them: every column a key) are future-dated: a time of
    :data:`RECEIVED_TIMES` more than :data:`FUTURE_TOLERANCE_DAYS` past the row's ``ingested_at`` (a row without
    one is not judged). Tables with none are left out."""
    counts: collections.Counter[str] = collections.Counter()
    for table, table_rows in rows.items():
        columns = RECEIVED_TIMES.get(table)
        if not columns:
            continue
        times_of = operator.itemgetter(*columns)
        count = 0
        ingested = limit = None
        for row in table_rows:
            # The rows of one mapping share one ingested_at: its limit is worked out once.
            if row[INGESTED_AT] is not ingested:
                ingested = row[INGESTED_AT]
                limit = None if ingested is None else ingested + FUTURE_TOLERANCE_MS
            if limit is None:
                continue
            for instant in times_of(row):  # a loop: any() over a generator costs twice as much
                if instant is not None and instant > limit:
                    count += 1
                    break
        if count:
            counts[table] = count
    return counts


# --- rollups of closed days (otel_datasink.rollup) -------------------------------------------------------------

DATASET_STATUS_DAILY = pa.schema(
    [
        ("dataset", pa.string()),
        ("last_success_at", TIMESTAMP),
        ("data_as_of", TIMESTAMP),
        ("last_update_at", TIMESTAMP),
        ("last_status", pa.string()),
        ("last_job_name", pa.string()),
        ("last_run_id", pa.string()),
        ("counted_at", TIMESTAMP),
        ("record_count", pa.int64()),
        ("sla_at", TIMESTAMP),
        ("freshness_sla_minutes", pa.int64()),
        ("owners_at", TIMESTAMP),
        ("owners", NAMES),
        ("rolled_up_at", TIMESTAMP),
    ]
)
"""``dataset_status_daily``: one row per dataset per closed day (``dt``) of ``dataset_status``, the view
``dataset_status_days`` of that day's rows: its last success, its newest ``data_as_of`` candidate, its latest
update (``last_update_at``: status, job, run), its latest update carrying a record count (``counted_at``), an SLA
(``sla_at``), owners (``owners_at``), each chosen by the tie rules of ``dataset_status_latest``. Written by the
compaction (:mod:`otel_datasink.rollup`); ``rolled_up_at`` tells a day's newest rollup from one it replaced."""
DATASET_STATUS_DAILY_TABLE = "dataset_status_daily"
JOB_RUNS_DAILY = pa.schema(
    [
        ("job_name", pa.string()),
        ("is_backfill", BOOLEAN),
        ("runs", pa.int64()),
        ("failures", pa.int64()),
        ("p50_duration_ms", pa.int64()),
        ("p95_duration_ms", pa.int64()),
        ("max_duration_ms", pa.int64()),
        ("records_processed", pa.int64()),
        ("rolled_up_at", TIMESTAMP),
    ]
)
"""``job_runs_daily``: one row per job per closed day (``dt``: the UTC day its runs started) and backfills apart,
the view ``runtime_trend`` of that day: finished runs, failures, the p50, p95 and max duration of the successful
ones (percentiles are per day: a day's row holds them exactly), records processed. Written by the compaction
(:mod:`otel_datasink.rollup`) from the day's ``job_runs`` files and the next day's (runs that end after midnight)."""
JOB_RUNS_DAILY_TABLE = "job_runs_daily"
ROLLUPS: dict[str, pa.Schema] = {JOB_RUNS_DAILY_TABLE: JOB_RUNS_DAILY, DATASET_STATUS_DAILY_TABLE: DATASET_STATUS_DAILY}
"""Rollup table name -> schema: tables of closed days made from the others' rows (:mod:`otel_datasink.rollup`),
with the same layout, partitioning and DDL; written by the compaction only, never compacted themselves."""
STORED_TABLES: dict[str, pa.Schema] = {**TABLES, **ROLLUPS}
"""Every table of a location: the tables of rows (:data:`TABLES`) and their rollups (:data:`ROLLUPS`)."""
