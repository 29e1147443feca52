"""A table read back as users read it, with pyarrow and with DuckDB, which must agree value for value."""

from __future__ import annotations

import datetime
import json

import duckdb
import fsspec
import pyarrow.dataset as ds


def _plain(value):
    # Map columns come back as [(k, v)] from pyarrow and as dicts from DuckDB; dt as str or date.
    if isinstance(value, list) and all(isinstance(item, tuple) and len(item) == 2 for item in value):
        return dict(value)
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


class TableReader:
    """Reads a table back as users do, with pyarrow and with DuckDB (``read_parquet``, Hive partitions)."""

    def __init__(self, location: str, endpoint_url: str | None = None) -> None:
        self.location = location.rstrip("/")
        # A fresh s3fs instance: a cached one could answer listings from before the writes.
        self.storage_options = (
            {"client_kwargs": {"endpoint_url": endpoint_url}, "skip_instance_cache": True} if endpoint_url else {}
        )

    def filesystem(self):
        fs, _ = fsspec.core.url_to_fs(self.location, **self.storage_options)
        return fs

    def arrow(self, table: str) -> list[dict]:
        fs, root = fsspec.core.url_to_fs(self.location, **self.storage_options)
        data = ds.dataset(f"{root}/{table}", filesystem=fs, format="parquet", partitioning="hive").to_table()
        return [{k: _plain(v) for k, v in row.items()} for row in data.to_pylist()]

    def duckdb(self, table: str) -> list[dict]:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        if self.location.startswith("s3://"):
            con.register_filesystem(self.filesystem())
        relation = con.sql(
            f"SELECT * FROM read_parquet('{self.location}/{table}/dt=*/*.parquet', hive_partitioning = true)"
        )
        names = relation.columns
        return [{k: _plain(v) for k, v in zip(names, row, strict=True)} for row in relation.fetchall()]

    def rows(self, table: str) -> list[dict]:
        """The table's rows; pyarrow and DuckDB must read the same values, column by column."""
        by_arrow = sorted(self.arrow(table), key=_row_key)
        by_duckdb = sorted(self.duckdb(table), key=_row_key)
        assert len(by_arrow) == len(by_duckdb)
        for arrow_row, duckdb_row in zip(by_arrow, by_duckdb, strict=True):
            assert arrow_row == duckdb_row
        return by_arrow


def _row_key(row: dict) -> str:
    return json.dumps(row, default=str, sort_keys=True)
