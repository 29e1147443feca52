"""``connect(location)``: a DuckDB connection with the tables and views, on a laptop or in a test.

The tables are views over ``read_parquet`` of the location's Hive partitions, so every query sees the files
written since. S3 (and any other fsspec store) is read through the same filesystem the writer uses,
registered in DuckDB: no DuckDB extension is downloaded, which keeps this working offline.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import duckdb
from fsspec.implementations.local import LocalFileSystem

from otel_datasink.catalog import ViewParameters, duckdb_views
from otel_datasink.config import Options
from otel_datasink.schema import PARTITION_COLUMN, TABLES
from otel_datasink.writer import open_location

_logger = logging.getLogger(__name__)


def connect(
    location: str | os.PathLike | None = None, *, parameters: ViewParameters | None = None, **options: Any
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection (session time zone UTC) with ``job_runs``, ``dataset_status`` and the views.

    ``location`` and ``options`` are those of :class:`otel_datasink.config.Options` (e.g. ``s3_endpoint_url``;
    unset ones come from ``OTEL_EXPORTER_DATASINK_*``); ``parameters`` those of the views. A table with no
    file yet is an empty relation of the right column types, so the views return no rows instead of failing;
    connect again once the first files exist.
    """
    fs, root = open_location(Options.resolve(location, **options))
    # Never download an extension (offline use); everything needed (parquet, icu) is built in.
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")
    if isinstance(fs, LocalFileSystem):
        base = root
    else:
        con.register_filesystem(fs)
        base = fs.unstrip_protocol(root)
    for table in TABLES:
        _create_table(con, table, f"{base}/{table}/{PARTITION_COLUMN}=*/*.parquet")
    for statement in duckdb_views(parameters):
        con.execute(statement)
    return con


def _create_table(con: duckdb.DuckDBPyConnection, table: str, pattern: str) -> None:
    quoted = pattern.replace("'", "''")
    try:
        con.execute(
            f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{quoted}', hive_partitioning = true, "
            f"union_by_name = true, hive_types = {{'{PARTITION_COLUMN}': VARCHAR}})"
        )
    except duckdb.IOException as error:
        if "No files found" not in str(error):
            raise
        _logger.info("no files for %s yet: it is empty until the next connect()", table)
        con.execute(f"CREATE OR REPLACE VIEW {table} AS {_empty_select(con, table)}")


def _empty_select(con: duckdb.DuckDBPyConnection, table: str) -> str:
    # The column types DuckDB gives the writer's Arrow schema are those read_parquet gives its files.
    schema = TABLES[table]
    types = con.from_arrow(schema.empty_table()).types
    columns = [f'CAST(NULL AS {duck_type}) AS "{name}"' for name, duck_type in zip(schema.names, types, strict=True)]
    columns.append(f'CAST(NULL AS VARCHAR) AS "{PARTITION_COLUMN}"')
    return f"SELECT {', '.join(columns)} WHERE false"
