"""The tables and views as SQL: Athena DDL from :data:`otel_datasink.schema.TABLES`, and the views of
``sql/views.sql`` (the one SQL source, in Athena's Trino dialect) for Athena and, transpiled by sqlglot, DuckDB;
:func:`pin_time` redefines a DuckDB connection's views as seen at one instant (alert evaluations, the report).

Where DuckDB and Trino give one function different meanings, the transpile step rewrites it:

- ``date_diff(unit, a, b)``: Trino counts whole units between the instants, DuckDB counts unit boundaries
  crossed (11:59:30 to 12:00:10 is 0 minutes in Trino, 1 in DuckDB); DuckDB's ``date_sub`` is Trino's meaning.
- ``approx_percentile``: DuckDB's ``approx_quantile`` interpolates a t-digest; ``quantile_disc`` is exact and
  returns a value of the set (nearest rank), as Trino's does on small groups.

Everything else the views use means the same in both engines (sqlglot already guards ``greatest`` against
NULLs; ``min_by`` is only used with a ``FILTER`` on its value, since DuckDB's ``arg_min`` skips NULLs).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.resources
import math
import re
import string
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from otel_datasink.location import table_path
from otel_datasink.schema import FUTURE_TOLERANCE_DAYS, PARTITION_COLUMN, STORED_TABLES

if TYPE_CHECKING:
    import duckdb

DEFAULT_DATABASE = "monitoring"
PROJECTION_START = "2020-01-01"
"""First day of the ``dt`` partition projection."""
PROJECTION_END = f"NOW+{FUTURE_TOLERANCE_DAYS}DAYS"
"""Last day of the ``dt`` partition projection: a row may be filed up to the tolerance of the receiver's clock ahead
of today (:func:`otel_datasink.location.filed_time`), and the views read as far (``sql/views.sql``)."""

VIEWS = (
    "job_runs_latest",
    "dataset_status_days",
    "dataset_status_latest",
    "recurring_failures",
    "volume_anomalies",
    "runtime_trend",
    "hung_runs",
    "alerts_open",
    "future_dated_rows",
    "pipeline_runs",
    "dataset_lineage",
    "stale_datasets",
    "dataset_checks_latest",
    "failing_checks",
    "sla_verdicts",
    "sla_attainment",
)
"""The views of ``sql/views.sql``, each after the views it reads."""

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

# S3's bucket naming rules (general purpose buckets): 3 to 63 lower-case letters, digits, dots and hyphens,
# starting and ending with a letter or digit, no two adjacent dots, not an IP address, none of the reserved
# prefixes and suffixes. Matched with fullmatch: "$" would also match before a trailing newline.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# One segment of the key prefix: the "safe characters" of S3's object key naming guidelines (letters, digits,
# ! - _ . * ' ( )) less ' (it ends an SQL string literal) and * (a wildcard to Athena and to the readers).
_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9!_.()-]+$")


def _parameter(default: float, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class ViewParameters:
    """The knobs of the views, fixed when they are generated (``otel-datasink ddl --window-days ...``).

    Each field's ``metadata["help"]`` says what it does (and is the help of its command-line option).
    """

    window_days: int = _parameter(
        30,
        "days of job_runs partitions the run views read, plus today: Athena scans this, not the whole history; "
        "a run with no row in the window is not in the views",
    )
    dataset_window_days: int = _parameter(
        400,
        "days of dataset_status partitions dataset_status_latest and stale_datasets read, plus today: a dataset "
        "that stopped updating stays listed (as stale, given an SLA) this long; dataset_status is small",
    )
    failure_days: int = _parameter(7, "recurring_failures.recent_failures counts the failures of this many days")
    anomaly_lookback_days: int = _parameter(7, "volume_anomalies judges the successful runs of this many days")
    anomaly_baseline_days: int = _parameter(14, "a judged run is compared with the job's runs of this many days before")
    anomaly_min_points: int = _parameter(7, "fewest baseline runs for a judgement")
    anomaly_z: float = _parameter(3.0, "standard deviations from the baseline mean that make an anomaly, either way")
    hung_floor_minutes: int = _parameter(60, "a STARTED run is hung after max(this, hung_factor x the job's p95)")
    hung_factor: float = _parameter(3.0, "multiple of the job's p95 successful duration after which a run is hung")

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{field.name} must be a positive number, not {value!r}")
            if field.type == "int" and not isinstance(value, int):
                raise ValueError(f"{field.name} must be an integer, not {value!r}")
        if self.window_days < self.anomaly_lookback_days + self.anomaly_baseline_days:
            raise ValueError("window_days must cover anomaly_lookback_days + anomaly_baseline_days")
        if self.window_days < self.failure_days:
            raise ValueError("window_days must cover failure_days")


def athena_type(arrow_type: pa.DataType) -> str:
    """The Athena (Hive DDL) type that reads a Parquet column written from ``arrow_type``."""
    if pa.types.is_string(arrow_type):
        return "string"
    if pa.types.is_int64(arrow_type):
        return "bigint"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_map(arrow_type):
        return f"map<{athena_type(arrow_type.key_type)},{athena_type(arrow_type.item_type)}>"
    if pa.types.is_list(arrow_type):
        return f"array<{athena_type(arrow_type.value_type)}>"
    raise TypeError(f"no Athena type for {arrow_type}")


def athena_location(location: str) -> str:
    """The ``s3://`` URL of a location, without trailing slash; ValueError (one line) when Athena cannot use it.

    ``s3://bucket`` or ``s3://bucket/prefix`` (``s3a://`` too): a bucket name that follows S3's bucket naming
    rules, and a key prefix of segments of letters, digits and ``! - _ . ( )`` (the safe characters of S3's
    object key naming guidelines, less ``'`` and ``*``), no segment empty, ``.`` or ``..``. Quotes, spaces,
    newlines and other control characters are refused: the location is pasted into the DDL's string literals.
    """
    if not isinstance(location, str) or not location.startswith(("s3://", "s3a://")):
        raise ValueError(f"Athena reads S3 only; {location!r} is not an s3:// location")
    bucket, _, prefix = location.split("://", 1)[1].partition("/")
    prefix = prefix.rstrip("/")
    if (
        not _BUCKET.fullmatch(bucket)
        or ".." in bucket
        or _IP_ADDRESS.fullmatch(bucket)
        or bucket.startswith(_RESERVED_BUCKET_PREFIXES)
        or bucket.endswith(_RESERVED_BUCKET_SUFFIXES)
    ):
        raise ValueError(
            f"{location!r} is not an s3://bucket/prefix location: {bucket!r} breaks S3's bucket naming rules "
            "(3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit, "
            "no '..', not an IP address nor a reserved name)"
        )
    if prefix and not all(_KEY_SEGMENT.fullmatch(part) and part not in (".", "..") for part in prefix.split("/")):
        raise ValueError(
            f"{location!r} is not an s3://bucket/prefix location: the prefix may hold only letters, digits and "
            "! - _ . ( ) between single slashes, no segment '.' or '..' (S3's safe key characters, less ' and *)"
        )
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def athena_tables(location: str, database: str = DEFAULT_DATABASE) -> list[str]:
    """``CREATE EXTERNAL TABLE`` statements of every table of :data:`~otel_datasink.schema.STORED_TABLES` (the
    rollups too) at ``location``,
    with ``dt`` partition projection (so new partitions are visible at once and ``MSCK REPAIR TABLE`` is never
    needed)."""
    _check_identifier(database)
    root = athena_location(location)
    statements = []
    for table, schema in STORED_TABLES.items():
        columns = ",\n".join(f"  `{field.name}` {athena_type(field.type)}" for field in schema)
        properties = {
            "projection.enabled": "true",
            f"projection.{PARTITION_COLUMN}.type": "date",
            f"projection.{PARTITION_COLUMN}.format": "yyyy-MM-dd",
            f"projection.{PARTITION_COLUMN}.range": f"{PROJECTION_START},{PROJECTION_END}",
            f"projection.{PARTITION_COLUMN}.interval": "1",
            f"projection.{PARTITION_COLUMN}.interval.unit": "DAYS",
            "storage.location.template": table_path(root, table, f"${{{PARTITION_COLUMN}}}"),
        }
        tblproperties = ",\n".join(f"  {_string(key)}={_string(value)}" for key, value in properties.items())
        statements.append(
            f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{table}` (\n{columns}\n)\n"
            f"PARTITIONED BY (`{PARTITION_COLUMN}` string)\n"
            f"STORED AS PARQUET\n"
            f"LOCATION {_string(table_path(root, table) + '/')}\n"
            f"TBLPROPERTIES (\n{tblproperties}\n)"
        )
    return statements


def athena_views(parameters: ViewParameters | None = None, database: str = DEFAULT_DATABASE) -> list[str]:
    """``CREATE OR REPLACE VIEW`` statements for Athena, table and view names qualified with ``database``."""
    return [statement for _, statement in _documented_athena_views(parameters or ViewParameters(), database)]


def athena_ddl(location: str, database: str = DEFAULT_DATABASE, parameters: ViewParameters | None = None) -> str:
    """The whole Athena script: the database, the tables and the views, statements ending in ``;``."""
    parameters = parameters or ViewParameters()
    settings = ", ".join(f"{f.name}={getattr(parameters, f.name)}" for f in dataclasses.fields(parameters))
    statements = [
        f"CREATE DATABASE IF NOT EXISTS `{_check_identifier(database)}`",
        *athena_tables(location, database),
    ]
    for comment, view in _documented_athena_views(parameters, database):
        statements.append("\n".join(f"-- {line}" for line in comment) + "\n" + view)
    header = f"-- otel-datasink tables and views for Athena engine v3 ({settings})\n"
    return header + "".join(f"\n{statement};\n" for statement in statements)


def duckdb_views(parameters: ViewParameters | None = None) -> list[str]:
    """``CREATE OR REPLACE VIEW`` statements for DuckDB over the unqualified tables."""
    return list(_duckdb_views(parameters or ViewParameters()))


@lru_cache(maxsize=16)
def _duckdb_views(parameters: ViewParameters) -> tuple[str, ...]:
    # Parsing and transpiling views.sql costs ~0.3 s of CPU, the same for the same parameters: each connection
    # (a report opens several, an alert --watch one per evaluation, the test suite hundreds) takes the text once
    # made. Few parameter sets are in use at once; 16 bounds the memory (~60 kB each).
    return tuple(to_duckdb_expression(s).sql(dialect="duckdb") for s in _view_statements(parameters))


COMPUTED_ONCE = ("job_runs_latest", "dataset_status_latest", "recurring_failures")
"""The views every other reads, and ``recurring_failures`` (read by the failing-job conditions, the root-cause walk
of ``stale_datasets`` and the gauges): :func:`pin_time` computes them once by default."""


def pin_time(
    con: duckdb.DuckDBPyConnection,
    now: datetime.datetime,
    parameters: ViewParameters | None,
    computed_once: tuple[str, ...] = COMPUTED_ONCE,
) -> None:
    """Redefines the views of ``con`` as seen at ``now`` instead of the clock, and computes the views of
    ``computed_once`` once.

    Pinned, the views, the missing runs and the incidents agree on one instant (and a test or a replay of an
    evaluation chooses it). The views of ``computed_once`` (:data:`COMPUTED_ONCE` by default) are then kept as
    temporary tables that the views of the same names read: each condition and gauge reads them again, and
    ranking a month of runs once instead of six times is most of an evaluation's cost
    (``benchmarks/bench_alert.py``). A reader of only some views (the report's connections) names those.
    """
    instant = now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    for statement in duckdb_views(parameters):
        statement = re.sub(r"\bCURRENT_TIMESTAMP\b", f"CAST('{instant}+00' AS TIMESTAMPTZ)", statement)
        statement = re.sub(r"\bCURRENT_DATE\b", f"CAST('{instant[:10]}' AS DATE)", statement)
        con.execute(statement)
    for view in computed_once:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _{view} AS SELECT * FROM {view}")
        con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM _{view}")


def to_duckdb(sql: str, read: str = "trino") -> str:
    """One statement of Athena's (Trino's) SQL as DuckDB SQL of the same meaning."""
    return to_duckdb_expression(sqlglot.parse_one(sql, read=read)).sql(dialect="duckdb")


def to_duckdb_expression(expression: exp.Expr) -> exp.Expression:
    """A parsed Trino expression rewritten where DuckDB's functions of the same name mean otherwise."""
    # exp.Expr: the type sqlglot 30 gives what it parses (the base of Expression); the annotations are not
    # evaluated, so older sqlglot, which has no Expr, imports this module all the same.
    return expression.transform(_duckdb_meaning)  # on a copy (transform's default): the input is left as it was


def _duckdb_meaning(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.DateDiff):
        # Trino date_diff(unit, a, b) is DateDiff(this=b, expression=a): DuckDB date_sub(unit, a, b).
        unit = node.text("unit").lower() or "day"
        return exp.Anonymous(this="DATE_SUB", expressions=[exp.Literal.string(unit), node.expression, node.this])
    if isinstance(node, exp.ApproxQuantile):
        return exp.Anonymous(this="QUANTILE_DISC", expressions=[node.this, node.args["quantile"]])
    return node


def _documented_athena_views(parameters: ViewParameters, database: str) -> list[tuple[list[str], str]]:
    # The comments of views.sql go above each statement, not into it: a statement Athena runs stays plain.
    _check_identifier(database)
    views = []
    for statement in _view_statements(parameters):
        qualified = statement.copy()
        comment = [line.strip() for line in qualified.pop_comments()]
        for table in qualified.find_all(exp.Table):
            if table.name in STORED_TABLES or table.name in VIEWS:
                table.set("db", exp.to_identifier(database))
        views.append((comment, qualified.sql(dialect="athena", pretty=True)))
    return views


def _string(value: str) -> str:
    # A string literal of Athena's DDL (Hive's: backslash escapes). athena_location already refuses anything
    # that would need escaping; quoting anyway keeps a location that slipped past it inside its literal.
    return exp.Literal.string(value).sql(dialect="hive")


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid Athena name (lower-case letters, digits, underscores)")
    return name


@cache
def _source() -> str:
    # One name per joinpath: Python 3.10's Traversable.joinpath takes one (a zipped package's would fail).
    text = importlib.resources.files("otel_datasink").joinpath("sql").joinpath("views.sql").read_text(encoding="utf-8")
    # The file's header comment (up to the first blank line) documents the file, not the first view.
    return text.split("\n\n", 1)[1]


def _view_statements(parameters: ViewParameters) -> list[exp.Create]:
    # The tolerance is the writer's too (where it files rows), not a knob of the views alone.
    text = string.Template(_source()).substitute(
        dataclasses.asdict(parameters), future_tolerance_days=FUTURE_TOLERANCE_DAYS
    )
    statements = [s for s in sqlglot.parse(text, read="trino") if s is not None]
    views = [s for s in statements if isinstance(s, exp.Create)]
    names = tuple(s.this.name for s in views)
    if names != VIEWS or len(views) != len(statements):
        raise RuntimeError(f"sql/views.sql defines {names}, expected {VIEWS}")
    return views
