"""The JSON API of ``otel-datasink serve``: the views of :data:`otel_datasink.catalog.VIEWS` as JSON, for programs.

- ``GET /api/views``: ``{"views": [{"name": "job_runs_latest", "url": "/api/views/job_runs_latest"}, ...]}``.
- ``GET /api/views/<name>``: ``{"view": name, "columns": [...], "rows": [{column: value}], "limit": N,
  "truncated": bool}``, at most ``limit`` rows (default :data:`DEFAULT_LIMIT`, at most :data:`MAX_LIMIT`);
  ``truncated`` says more were left. ``order=COLUMN`` sorts them (``order=-COLUMN`` descending, NULLs last), and
  any other parameter ``COLUMN=VALUE`` keeps the rows whose column reads ``VALUE`` as text (given again: any of
  the values), e.g. ``/api/views/job_runs_latest?job_name=load_orders&status=FAILED&order=-end_time&limit=10``.

Times are ISO 8601 UTC instants with milliseconds (``2026-05-04T07:00:00.123Z``), days ``2026-05-04``, lists and
maps JSON arrays and objects, a number that is no finite number ``null``. A client names a view and columns,
never SQL: the view is one of :data:`~otel_datasink.catalog.VIEWS`, the columns those the view has, and the
values are bound as parameters. Errors are ``{"error": "..."}``: 404 for an unknown view or path, 400 for a bad
parameter, 500 when the store cannot be read. Each request reads the location anew (a connection of its own, at
most :data:`MAX_QUERIES` at once), so it answers what was written up to then, at the clock of the request.
"""

from __future__ import annotations

import datetime
import decimal
import json
import logging
import math
import threading
import urllib.parse
from http import HTTPStatus
from typing import Any

from otel_datasink import local
from otel_datasink.catalog import VIEWS, ViewParameters
from otel_datasink.config import Options

_logger = logging.getLogger(__name__)

PREFIX = "/api"
"""The paths the API answers start with this (then ``/`` or nothing)."""
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
"""Most rows one answer holds: a program that wants more narrows by column instead (a view is never paged)."""
MAX_QUERIES = 4
"""Requests answered at once; the others wait for one of them (each opens DuckDB, which uses every core)."""
_RESERVED = ("limit", "order")


class ApiError(Exception):
    """A request the API refuses: its status and what is wrong."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class ViewsApi:
    """Answers ``/api/...`` from the views over ``options``' location (its default view ``parameters``)."""

    def __init__(self, options: Options, parameters: ViewParameters | None = None) -> None:
        self.options = options
        self.parameters = parameters
        self._queries = threading.BoundedSemaphore(MAX_QUERIES)

    def answer(self, target: str) -> tuple[HTTPStatus, bytes]:
        """The status and JSON body of a request for ``target`` (a path with its query string)."""
        path, _, query = target.partition("?")
        try:
            if path in ("/api/views", "/api/views/"):
                document: dict[str, Any] = {"views": [{"name": name, "url": f"/api/views/{name}"} for name in VIEWS]}
            elif path.startswith("/api/views/"):
                document = self._rows(urllib.parse.unquote(path.removeprefix("/api/views/")), query)
            else:
                raise ApiError(HTTPStatus.NOT_FOUND, f"no such path: {path} (the views are listed at /api/views)")
        except ApiError as error:
            return error.status, _encode({"error": str(error)})
        except Exception as error:  # noqa: BLE001 - the store's failure (S3 unreachable...): one answer, not a crash
            _logger.warning("%s failed: %s", path, error)
            return HTTPStatus.INTERNAL_SERVER_ERROR, _encode({"error": str(error).split("\n", 1)[0]})
        return HTTPStatus.OK, _encode(document)

    def _rows(self, view: str, query: str) -> dict[str, Any]:
        if view not in VIEWS:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no view {view!r} (the views are listed at /api/views)")
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        limit = _limit([value for name, value in pairs if name == "limit"])
        orders = [value for name, value in pairs if name == "order"]
        with self._queries:
            con = local.connect(
                self.options.location, parameters=self.parameters, s3_endpoint_url=self.options.s3_endpoint_url
            )
            try:
                columns = [row[0] for row in con.execute(f"DESCRIBE {view}").fetchall()]
                sql, values = _select(view, columns, pairs, orders, limit + 1)
                cursor = con.execute(sql, values)
                rows = cursor.fetchall()
            finally:
                con.close()
        return {
            "view": view,
            "columns": columns,
            "rows": [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows[:limit]],
            "limit": limit,
            "truncated": len(rows) > limit,
        }


def _limit(given: list[str]) -> int:
    if not given:
        return DEFAULT_LIMIT
    if len(given) == 1 and given[0].isdigit() and 1 <= int(given[0]) <= MAX_LIMIT:
        return int(given[0])
    raise ApiError(HTTPStatus.BAD_REQUEST, f"limit must be one whole number from 1 to {MAX_LIMIT}")


def _select(
    view: str, columns: list[str], pairs: list[tuple[str, str]], orders: list[str], limit: int
) -> tuple[str, list[str]]:
    """The query of ``view``'s rows: the client's names are checked against ``columns``, its values bound."""
    chosen: dict[str, list[str]] = {}
    for name, value in pairs:
        if name not in _RESERVED:
            chosen.setdefault(_column(name, columns, view), []).append(value)
    where = [f"CAST({_quoted(name)} AS VARCHAR) IN ({', '.join('?' * len(values))})" for name, values in chosen.items()]
    sql = f"SELECT * FROM {view}" + (f" WHERE {' AND '.join(where)}" if where else "")
    if len(orders) > 1:
        raise ApiError(HTTPStatus.BAD_REQUEST, "order is given once: COLUMN, or -COLUMN for descending")
    if orders:
        descending = orders[0].startswith("-")
        column = _column(orders[0].removeprefix("-"), columns, view)
        sql += f" ORDER BY {_quoted(column)} {'DESC' if descending else 'ASC'} NULLS LAST"
    return f"{sql} LIMIT {limit}", [value for values in chosen.values() for value in values]


def _column(name: str, columns: list[str], view: str) -> str:
    if name not in columns:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{view} has no column {name!r} (its columns: {', '.join(columns)})")
    return name


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _plain(value: Any) -> Any:
    """``value`` as JSON has it: instants in ISO 8601 UTC with milliseconds, no NaN (invalid JSON)."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            return value.isoformat(timespec="milliseconds")
        utc = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return utc.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        value = float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)  # a UUID, or a type a future DuckDB returns: its text


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
