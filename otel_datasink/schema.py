"""The one Arrow definition of each table; the Parquet files, the Athena DDL and the DuckDB views follow it.

Timestamps are UTC instants in milliseconds, written as Parquet INT64 ``TIMESTAMP(isAdjustedToUTC=true, MILLIS)``,
which Athena engine v3 reads as ``timestamp`` (never INT96). The ``dt`` partition column is not stored in the
files: it is the Hive folder ``dt=YYYY-MM-DD`` (UTC date of ``event_time``).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

# Typed as DataType so that the field lists below read as (str, DataType) pairs, as pa.schema takes them (mypy
# joins the stubs' StringType, Int64Type, ... to object).
TIMESTAMP: pa.DataType = pa.timestamp("ms", tz="UTC")
ATTRIBUTES: pa.DataType = pa.map_(pa.string(), pa.string())
PARTITION_COLUMN = "dt"
"""The Hive partition column: the UTC date (``YYYY-MM-DD``) of each row's ``event_time``."""

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
    ]
)
"""``job_runs``: one row per state of a run (STARTED, then SUCCESS or FAILED); duplicates collapse in the views."""

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
    ]
)
"""``dataset_status``: one row per update of a dataset by a job run."""

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
"""The tables spans make (the pipeline's output): a location holding neither has never received a job span."""

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
