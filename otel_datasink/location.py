"""The location: where the tables live (a local folder or an fsspec URL) and how their files are laid out there.

Every side reads and writes one layout: ``<root>/<table>/dt=YYYY-MM-DD/<file name>.parquet``. The writer and the
compaction put files there, ``local.connect`` and the report read them, ``ddl`` points Athena at them, and locks
(:mod:`otel_datasink.lease`) live beside them. A table's ``dt`` partition is the UTC date of each row's
:func:`filed_time`; a file's name starts with its creation time (:func:`file_name`), so names sort by time.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from otel_datasink.extras import import_extra
from otel_datasink.schema import FUTURE_TOLERANCE_MS, INGESTED_AT, PARTITION_COLUMN

if TYPE_CHECKING:
    import fsspec

    from otel_datasink.config import Options

_DAY_MS = 86_400_000
_PARTITION_FOLDER = re.compile(rf"{PARTITION_COLUMN}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_FILE_STAMP = re.compile(r"\d{8}T\d{15}Z")
"""The creation time that starts a file's name (:func:`file_name`)."""


def open_location(options: Options) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and root path of ``options.location`` (a local path or an fsspec URL)."""
    import fsspec  # here: the layout alone (Athena's DDL) needs no filesystem

    storage_options: dict[str, Any] = dict(options.storage_options)
    if options.location.startswith(("s3://", "s3a://")):
        import_extra("s3fs", "s3")  # fsspec's own error ("Install s3fs to access S3") names no extra
        client_kwargs = dict(storage_options.pop("client_kwargs", {}) or {})
        if options.s3_endpoint_url:
            client_kwargs.setdefault("endpoint_url", options.s3_endpoint_url)
        if options.s3_region:
            client_kwargs.setdefault("region_name", options.s3_region)
        # One attempt per call with short socket timeouts: the writer retries under its own deadline, so
        # a dead endpoint costs seconds, not botocore's minutes.
        config_kwargs = {
            "connect_timeout": min(5.0, options.timeout),
            "read_timeout": max(1.0, options.timeout),
            "retries": {"max_attempts": 1, "mode": "standard"},
            **(storage_options.pop("config_kwargs", {}) or {}),
        }
        storage_options.update(client_kwargs=client_kwargs, config_kwargs=config_kwargs)
    fs, root = fsspec.core.url_to_fs(options.location, **storage_options)
    if getattr(fs, "retries", None) is not None:
        fs.retries = 1
    return fs, root.rstrip("/")


# --- the layout ------------------------------------------------------------------------------------------------


def table_path(root: str, table: str, dt: str | None = None) -> str:
    """The folder of a table under ``root``, or of one of its partitions: ``<root>/<table>/dt=<dt>``."""
    base = f"{root}/{table}"
    return base if dt is None else f"{base}/{partition_folder(dt)}"


def partition_folder(dt: str) -> str:
    """The name of a ``dt`` partition's folder: ``dt=2026-05-27``."""
    return f"{PARTITION_COLUMN}={dt}"


def partition_of_folder(path: str) -> str | None:
    """The ``dt`` of a partition's folder (a path ending ``/dt=2026-05-27``), None for any other path."""
    match = _PARTITION_FOLDER.search(path.rstrip("/"))
    return match.group(1) if match else None


def files_glob(root: str, table: str) -> str:
    """The glob of every Parquet file of a table (those whose names start with ``_`` or ``.`` are hidden from it:
    ``read_parquet``, Athena and pyarrow skip them too)."""
    return f"{table_path(root, table, '*')}/*.parquet"


def file_name(now_ns: int | None = None) -> str:
    """A collision-free object name that sorts by creation time."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_ns // 1_000_000_000))
    return f"{stamp}{now_ns % 1_000_000_000:09d}Z-{uuid.uuid4().hex[:12]}.parquet"


def temporary_name(name: str) -> str:
    """The name a file ``name`` is written under on local disk before it is renamed: hidden (a leading dot) and
    named after its file, so that a compaction knows its own temporaries by its outputs' names."""
    return f".{name}.{uuid.uuid4().hex[:12]}.tmp"


def temporary_target(name: str) -> str | None:
    """The file a :func:`temporary_name` is written for, None for a name that is no temporary."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    return name[1:].rsplit(".", 2)[0]


def is_data_file(path: str) -> bool:
    """Whether ``path`` is a file of a table's rows: a Parquet file not hidden (by a leading ``_`` or ``.``)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith(("_", "."))


def file_stamp(name: str) -> str | None:
    """The creation time that starts a name of :func:`file_name`, None for a name that starts with none."""
    match = _FILE_STAMP.match(name)
    return match.group(0) if match else None


# --- partitions ------------------------------------------------------------------------------------------------


def partition_of(epoch_ms: int, _cache: dict[int, str] = {}) -> str:  # noqa: B006 - a deliberate memo
    """The ``dt`` value (UTC date, ``YYYY-MM-DD``) of an instant in epoch milliseconds."""
    day = epoch_ms // _DAY_MS
    value = _cache.get(day)
    if value is None:
        value = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
        if len(_cache) < 10_000:
            _cache[day] = value
    return value


def filed_time(row: Mapping[str, Any]) -> int:
    """The instant whose UTC date is a row's ``dt`` partition: its ``event_time``, or its ``ingested_at`` when the
    event time is further ahead of it than :data:`~otel_datasink.schema.FUTURE_TOLERANCE_DAYS` (a row of year 2554
    is filed today, where the views' windows see it, rather than in a partition no window reaches)."""
    event_time: int = row["event_time"]
    ingested = row.get(INGESTED_AT)
    return ingested if ingested is not None and event_time > ingested + FUTURE_TOLERANCE_MS else event_time


def by_partition(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """Rows grouped by their ``dt`` partition, in date order: the date of their ``event_time``, or of their
    ``ingested_at`` for a row whose event time is too far ahead of it (:func:`filed_time`)."""
    if not rows:
        return []
    times = [row["event_time"] for row in rows]
    received = [instant for row in rows if (instant := row.get(INGESTED_AT)) is not None]
    if received and max(times) > min(received) + FUTURE_TOLERANCE_MS:
        times = [filed_time(row) for row in rows]
    # A batch nearly always falls on one UTC day: check that with min/max before grouping row by row.
    if min(times) // _DAY_MS == max(times) // _DAY_MS:
        return [(partition_of(times[0]), rows)]
    groups: dict[str, list[dict]] = {}
    for row, time_ms in zip(rows, times, strict=True):
        groups.setdefault(partition_of(time_ms), []).append(row)
    return sorted(groups.items())
