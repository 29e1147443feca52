"""``connect(location)``: a DuckDB connection with the tables and views, on a laptop or in a test.

The tables are views over ``read_parquet`` of the location's Hive partitions, so every query sees the files
written since. S3 (and any other fsspec store) is read through the same filesystem the writer uses,
registered in DuckDB: no DuckDB extension is downloaded, which keeps this working offline.

A location with no table yet opens as empty tables (a test, a job that has not run yet); with
``must_exist=True`` it raises :class:`NoTablesError` instead, so a mistyped location fails a check loudly.

:func:`write_database` stores the same tables and views in a DuckDB database file, for BI tools: its views are
SQL over the location's globs, run anew by every query, so they read what was written since, as a connection does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from otel_datasink.config import Options
from otel_datasink.extras import needs
from otel_datasink.location import files_glob, open_location, table_path
from otel_datasink.schema import DATASET_CHECKS_TABLE, PARTITION_COLUMN, ROLLUPS, SPAN_TABLES, STORED_TABLES, TABLES

with needs("query"):  # without duckdb or sqlglot: "duckdb is not installed: pip install 'otel-datasink[query]'"
    import duckdb

    from otel_datasink.catalog import ViewParameters, duckdb_views

_logger = logging.getLogger(__name__)

_opened: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
"""The connections :func:`connect` made that are still referenced: those :func:`interrupt_queries` interrupts."""
_opened_lock = threading.Lock()
_bases: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, str] = weakref.WeakKeyDictionary()
"""The location (as DuckDB reads it) of each connection of :func:`connect`: :func:`read_days` points it elsewhere."""


class NoTablesError(FileNotFoundError):
    """The location does not exist, is a file, or holds no file of any table (``connect(..., must_exist=True)``)."""


def connect(
    location: str | os.PathLike | None = None,
    *,
    parameters: ViewParameters | None = None,
    must_exist: bool = False,
    database: str | os.PathLike = ":memory:",
    rollups: bool = True,
    days: tuple[str, ...] | None = None,
    **options: Any,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection (session time zone UTC) with every table (``job_runs``, ``dataset_status``,
    ``alerts``, ``dataset_checks``) and the views; of the database file ``database`` instead, where they are stored
    (:func:`write_database`).

    ``location`` and ``options`` are those of :class:`otel_datasink.config.Options` (e.g. ``s3_endpoint_url``;
    unset ones come from ``OTEL_EXPORTER_DATASINK_*``); ``parameters`` those of the views. A table with no
    file yet is an empty relation of the right column types, so the views return no rows instead of failing, and
    reads its files once they come (DuckDB 2.0 and later; before, connect again once the first files exist).
    With ``must_exist`` a location that does not exist, is a file, or holds no file of ``job_runs``,
    ``dataset_status`` or ``dataset_checks`` (the tables spans make: alerts alone are no data) raises
    :class:`NoTablesError` (its message says which), and a missing bucket :class:`FileNotFoundError`.

    ``rollups=False`` leaves the rollup tables (:data:`~otel_datasink.schema.ROLLUPS`) empty, so the views read
    the rows alone; ``days`` (``dt`` values) restricts the tables of rows to those partitions: how a rollup of
    closed days is computed (:mod:`otel_datasink.rollup`), and how tests compare the views with and without.
    """
    resolved = Options.resolve(location, **options)
    fs, root = open_location(resolved)
    if must_exist and not fs.isdir(root):
        raise _missing(fs, root, resolved.location)
    # Never download an extension (offline use); everything needed (parquet, icu) is built in.
    con = duckdb.connect(os.fspath(database), config={"autoinstall_known_extensions": False})
    with _opened_lock:  # from here: creating the views globs the store, which a Ctrl-C interrupts too
        _opened.add(con)
    con.execute("SET TimeZone = 'UTC'")
    # Each view over job_runs binds its files' footers again, and so does each query: cached for the
    # connection (a file changed since is read again, its modification time newer), a year of daily files costs
    # a status or an alert evaluation 0.3 s less to connect and 0.6 s less to query (benchmarks/bench_scale.py).
    con.execute("SET parquet_metadata_cache = true")
    if isinstance(fs, LocalFileSystem):
        base = root
    else:
        con.register_filesystem(fs)
        base = fs.unstrip_protocol(root)
    _bases[con] = base
    found = {
        table: _create_table(con, table, _patterns(base, table, days))
        for table in STORED_TABLES
        if rollups or table not in ROLLUPS
    }
    for table in set(STORED_TABLES) - set(found):
        _create_table(con, table, [])
    received = (*SPAN_TABLES, DATASET_CHECKS_TABLE)  # a location fed only dbt test events holds checks alone
    if must_exist and not any(found[table] for table in received):
        con.close()
        raise NoTablesError(f"{resolved.location} holds no {' or '.join(received)} files")
    for statement in duckdb_views(parameters):
        con.execute(statement)
    return con


def read_days(con: duckdb.DuckDBPyConnection, days: tuple[str, ...], tables: tuple[str, ...] = tuple(TABLES)) -> None:
    """Points tables of rows (``tables``: by default every one of :data:`~otel_datasink.schema.TABLES`) of a
    connection of :func:`connect` at the partitions ``days`` (``dt`` values that have files) alone; the views,
    bound late, follow."""
    for table in tables:
        _create_table(con, table, _patterns(_bases[con], table, days))


def write_database(
    path: str | os.PathLike,
    location: str | os.PathLike | None = None,
    *,
    parameters: ViewParameters | None = None,
    must_exist: bool = True,
    replace: bool = False,
    **options: Any,
) -> Path:
    """Writes the DuckDB database file ``path`` with the tables and views of :func:`connect` over ``location``
    (``options`` as there), for BI tools and other processes to open; returns its absolute path.

    Its views read the location when queried, at their own clock: a local location by its absolute path; an
    object store (``s3://``) by its URL, which the reader's DuckDB reads with its ``httpfs`` extension and
    credentials of its own (no credential is stored in the file). An existing ``path`` raises
    :class:`FileExistsError` unless ``replace``: the file is written beside it and renamed over it, so a reader
    that has the old one open keeps it whole. A missing folder raises :class:`FileNotFoundError`, a location
    with no table :class:`NoTablesError` unless ``must_exist`` is false.
    """
    target = Path(path).absolute()
    if target.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a database file")
    if target.exists() and not replace:
        raise FileExistsError(f"{path} exists (a database of its own, perhaps)")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {target.parent} does not exist")
    # A hidden name in the same folder: os.replace is then atomic, and a failure leaves no half-written FILE.
    written = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        con = connect(location, parameters=parameters, must_exist=must_exist, database=written, **options)
        con.close()  # checkpoints: the views are in the file itself, no write-ahead log beside it
        os.replace(written, target)
    finally:
        written.unlink(missing_ok=True)
        written.with_name(written.name + ".wal").unlink(missing_ok=True)
    return target


def interrupt_queries() -> None:
    """Interrupts the query each connection of :func:`connect` runs now (it raises ``duckdb.InterruptException``);
    safe from any thread, one that is in no query is left as it is.

    For Ctrl-C (:func:`otel_datasink.cli.main`): DuckDB, left alone, notices the KeyboardInterrupt of a query only
    when the query ends, and a thread's query not at all.
    """
    with _opened_lock:
        connections = list(_opened)
    for con in connections:
        with contextlib.suppress(duckdb.ConnectionException):  # closed since: it runs nothing
            con.interrupt()


def _missing(fs: AbstractFileSystem, root: str, shown: str) -> NoTablesError | FileNotFoundError:
    """Why ``root``, which is no folder, holds no table, as the error to raise.

    A missing bucket is a plain :class:`FileNotFoundError`, not a :class:`NoTablesError`: it is a typo or a wrong
    account, never a location that fills up later, and reading it fails with or without ``must_exist``.
    """
    if fs.isfile(root):
        return NoTablesError(f"{shown} is a file, not a folder of tables")
    if isinstance(fs, LocalFileSystem):
        return NoTablesError(f"{shown} does not exist")
    # An object store has no folders: a prefix "exists" only while objects are under it.
    bucket = root.split("/", 1)[0]
    if not fs.exists(bucket):
        return FileNotFoundError(f"bucket {bucket} of {shown} does not exist")
    return NoTablesError(f"nothing is stored under {shown}")


def _patterns(base: str, table: str, days: tuple[str, ...] | None) -> list[str]:
    """The globs of a table's files: every partition's, or those of ``days`` (rows' tables only)."""
    if days is None or table not in TABLES:
        return [files_glob(base, table)]
    return [f"{table_path(base, table, day)}/*.parquet" for day in days]


def _create_table(con: duckdb.DuckDBPyConnection, table: str, patterns: list[str]) -> bool:
    """Creates the view ``table`` over the files of ``patterns``; False when there is none yet (an empty relation,
    which reads the files once they come where DuckDB can), or no pattern (an empty relation for good)."""
    empty = _empty_select(con, table)
    if not patterns:
        con.execute(f"CREATE OR REPLACE VIEW {table} AS {empty}")
        return False
    quoted = "[" + ", ".join("'" + pattern.replace("'", "''") + "'" for pattern in patterns) + "]"
    try:
        # union_by_name reads a column missing from some files as NULL; the empty select of the schema adds the
        # columns none of the files has yet (every file written before a column was added), as NULL too.
        files = _read_parquet(quoted)
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {files} UNION ALL BY NAME {empty}")
        return True
    except duckdb.IOException as error:
        if "No files found" not in str(error):
            raise
    try:
        # allow_empty: no file is no row, not an error, so a view of a database file (write_database) reads the
        # table's first files when they come. With no file it has one column "empty": the schema's are named.
        columns = ", ".join(f'"{name}"' for name in [*STORED_TABLES[table].names, PARTITION_COLUMN])
        con.execute(
            f"CREATE OR REPLACE VIEW {table} AS SELECT {columns} FROM "
            f"(SELECT * FROM {_read_parquet(quoted, allow_empty=True)} UNION ALL BY NAME {empty})"
        )
        _logger.info("no files for %s yet: it is empty until they come", table)
    except duckdb.BinderException:  # DuckDB before 2.0 has no allow_empty
        _logger.info("no files for %s yet: it is empty until the next connect()", table)
        con.execute(f"CREATE OR REPLACE VIEW {table} AS {empty}")
    return False


def _read_parquet(quoted: str, allow_empty: bool = False) -> str:
    """The ``read_parquet`` of a table's files (``quoted``: their globs as an SQL list of string literals)."""
    allowing = ", allow_empty = true" if allow_empty else ""
    return (
        f"read_parquet({quoted}, hive_partitioning = true, union_by_name = true, "
        f"hive_types = {{'{PARTITION_COLUMN}': VARCHAR}}{allowing})"
    )


def _empty_select(con: duckdb.DuckDBPyConnection, table: str) -> str:
    # The column types DuckDB gives the writer's Arrow schema are those read_parquet gives its files.
    schema = STORED_TABLES[table]
    types = con.from_arrow(schema.empty_table()).types
    columns = [f'CAST(NULL AS {duck_type}) AS "{name}"' for name, duck_type in zip(schema.names, types, strict=True)]
    columns.append(f'CAST(NULL AS VARCHAR) AS "{PARTITION_COLUMN}"')
    return f"SELECT {', '.join(columns)} WHERE false"
