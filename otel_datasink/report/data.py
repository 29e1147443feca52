"""What the dashboards show, read from the views (never from view logic of its own) into plain Python values.

Every figure is a view's answer, pinned at one instant (:func:`otel_datasink.catalog.pin_time`, as
``otel-datasink alert`` does) so that the numbers of one page agree with each other. States (failing jobs, stale
datasets, hung runs, open alerts, recent runs) come from the views with their default parameters
(:data:`STATE_PARAMETERS`, ``con``); the period's aggregates (runs, success rate, durations per day, the heat
map) from ``runtime_trend`` over a window that covers the period and the one before (:func:`trend_parameters`,
``trend``). The previous period's states are the same views pinned at the period's start over the rows whose
``event_time`` is not later: what the views would have answered then.

Large histories stay small here: per job, only the most recent :data:`RECENT_RUNS` runs, :data:`RECENT_FAILURES`
failures and :data:`RECENT_BACKFILLS` backfills are read; everything older is in daily aggregates
(``runtime_trend``).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import TYPE_CHECKING, Any

from otel_datasink.catalog import ViewParameters
from otel_datasink.schema import FUTURE_TOLERANCE_DAYS

if TYPE_CHECKING:
    import duckdb

RECENT_RUNS = 50
"""Runs per job read one by one (the job's timeline and records chart, the status strip); older ones are in the
daily aggregates only."""
RECENT_FAILURES = 5
"""Failures per job listed with their error."""
RECENT_BACKFILLS = 5
"""Backfill runs per job listed apart."""
RECENT_UPDATES = 50
"""Updates per dataset read one by one (its chart)."""
GRID_RUNS = 20
"""Parent runs per pipeline in its grid (the newest): its columns."""

Row = dict[str, Any]


STATE_PARAMETERS = ViewParameters()
"""The parameters of the views the states are read from (failing jobs, hung runs, anomalies, freshness, recent
runs): the views' defaults, so that the page agrees with ``otel-datasink status`` and ``alert``."""


def trend_parameters(days: int) -> ViewParameters:
    """The parameters of the views the period's aggregates are read from (``runtime_trend``): ``window_days``
    covers the period and the one before (``2 * days``), everything else as :data:`STATE_PARAMETERS`."""
    return ViewParameters(window_days=max(STATE_PARAMETERS.window_days, 2 * days))


@dataclasses.dataclass(frozen=True)
class Figure:
    """One number of the overview, with the same number for the previous period (None when not known)."""

    name: str
    value: float | None
    previous: float | None
    percent: bool = False
    higher_is_better: bool = False


@dataclasses.dataclass
class Job:
    """One job: its line in the jobs list and its page."""

    name: str
    last_status: str
    last_start: datetime.datetime | None
    current_streak: int = 0
    runs: int = 0
    """Finished runs that started in the period."""
    failures: int = 0
    last_error_type: str | None = None
    last_error_message: str | None = None
    recent: list[Row] = dataclasses.field(default_factory=list)
    """The most recent runs, newest first (at most :data:`RECENT_RUNS`)."""
    daily: list[Row] = dataclasses.field(default_factory=list)
    """``runtime_trend`` rows of the period, oldest first."""
    failed_runs: list[Row] = dataclasses.field(default_factory=list)
    backfills: list[Row] = dataclasses.field(default_factory=list)
    anomalies: list[Row] = dataclasses.field(default_factory=list)
    hung: list[Row] = dataclasses.field(default_factory=list)

    @property
    def owners(self) -> list[str]:
        """The owners its latest run names (``job_runs_latest.owners``)."""
        return list(self.recent[0]["owners"] or ()) if self.recent else []

    @property
    def parent(self) -> str | None:
        """The pipeline (parent job) its latest run belongs to, if any: a task of a pipeline."""
        return self.recent[0]["parent_job_name"] if self.recent else None

    @property
    def needs_attention(self) -> bool:
        """Failing now, failed in the period, a volume anomaly or a hung run: what a morning look is for."""
        return bool(self.current_streak or self.failures or self.anomalies or self.hung)


@dataclasses.dataclass
class Dataset:
    """One dataset: its ``dataset_status_latest`` row, its recent updates and the jobs that wrote it."""

    name: str
    status: Row
    updates: list[Row] = dataclasses.field(default_factory=list)
    """The most recent distinct updates of the period, newest first (at most :data:`RECENT_UPDATES`), each with
    the data it ``brought`` and the dataset's ``data_as_of`` right after it (``_UPDATES``)."""
    writers: list[Row] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Pipeline:
    """A parent job (a DAG, a flow, a dbt invocation): its newest runs (``pipeline_runs``) and their child runs
    (``job_runs_latest``), what its grid and its runs' pages show."""

    name: str
    runs: list[Row]
    """Its ``pipeline_runs`` rows, newest first (at most :data:`GRID_RUNS`)."""
    children: list[Row] = dataclasses.field(default_factory=list)
    """The ``job_runs_latest`` rows of those runs, each with ``written``: the datasets it wrote."""

    @property
    def tasks(self) -> list[str]:
        """Its child jobs, in the order they first started in its runs (Airflow's grid rows), then by name."""
        first: dict[str, Any] = {}
        for child in sorted(self.children, key=lambda row: _instant_key(row["start_time"])):
            first.setdefault(child["job_name"], child["start_time"])
        return sorted(first, key=lambda name: (_instant_key(first[name]), name))

    @property
    def owners(self) -> list[str]:
        """The owners its child runs name."""
        return sorted({owner for child in self.children for owner in child["owners"] or ()})

    def children_of(self, run_id: str | None) -> list[Row]:
        """The child runs of its run ``run_id``, by start."""
        return [child for child in self.children if child["parent_run_id"] == run_id]


def _instant_key(value: datetime.datetime | None) -> tuple[bool, datetime.datetime | None]:
    return (value is None, value)


def run_state(children: list[Row]) -> str:
    """A parent run's state from its child runs (the latest attempt of each job): STARTED while one runs, FAILED
    when one failed, else SUCCESS (an attempt that failed and was retried successfully does not fail it)."""
    latest: dict[str, Row] = {}
    for child in children:
        if child["job_name"] not in latest or child["attempt"] > latest[child["job_name"]]["attempt"]:
            latest[child["job_name"]] = child
    states = {child["status"] for child in latest.values()}
    return "STARTED" if "STARTED" in states else "FAILED" if "FAILED" in states else "SUCCESS"


@dataclasses.dataclass
class Structure:
    """The platform's structure: pipelines, lineage and data-quality checks."""

    pipelines: list[Pipeline] = dataclasses.field(default_factory=list)
    lineage: list[Row] = dataclasses.field(default_factory=list)
    """The edges of ``dataset_lineage``."""
    checks: list[Row] = dataclasses.field(default_factory=list)
    """``dataset_checks_latest``, failing ones first."""


@dataclasses.dataclass
class Snapshot:
    """Everything a report shows, as of ``now``, for the ``days`` days up to it."""

    now: datetime.datetime
    days: int
    figures: list[Figure]
    jobs: list[Job]
    datasets: list[Dataset]
    daily_runs: list[Row]
    """Per day of the period: finished runs, failed ones."""
    failures_by_day: list[Row]
    """Per job and day of the period with a failure: the failures."""
    hung: list[Row]
    alerts: list[Row] | None
    """The open incidents; None when the location has no alerts table."""
    structure: Structure = dataclasses.field(default_factory=Structure)
    slas: list[Row] = dataclasses.field(default_factory=list)
    """Per SLA (subject, kind) with a verdict in the period: :func:`slas`."""

    @property
    def empty(self) -> bool:
        """No job and no dataset: a location that holds no run yet."""
        return not self.jobs and not self.datasets

    @property
    def period_start(self) -> datetime.date:
        """The first UTC day of the period (the period is ``days`` days, today included)."""
        return period_start(self.now, self.days)


def period_start(now: datetime.datetime, days: int) -> datetime.date:
    """The first UTC day of the ``days`` days up to ``now``, today included."""
    return now.astimezone(datetime.timezone.utc).date() - datetime.timedelta(days=days - 1)


def rows(con: duckdb.DuckDBPyConnection, sql: str, parameters: dict[str, Any] | None = None) -> list[Row]:
    """The rows of ``sql`` as dicts."""
    cursor = con.execute(sql, parameters or {})
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


# --- the overview ---------------------------------------------------------------------------------------------

_PERIOD_RUNS = """
SELECT
    coalesce(sum(runs) FILTER (WHERE run_date >= $start), 0) AS runs,
    coalesce(sum(failures) FILTER (WHERE run_date >= $start), 0) AS failures,
    coalesce(sum(runs) FILTER (WHERE run_date < $start), 0) AS previous_runs,
    coalesce(sum(failures) FILTER (WHERE run_date < $start), 0) AS previous_failures
FROM runtime_trend
WHERE run_date >= $previous_start AND run_date <= $today
"""


def job_state(con: duckdb.DuckDBPyConnection, has_alerts: bool) -> Row:
    """The states of the jobs at the views' now: failing jobs (a current failure streak), hung runs and, with an
    alerts table, open alerts."""
    return _job_counts(*_job_views(con, has_alerts))


def _job_views(con: duckdb.DuckDBPyConnection, has_alerts: bool) -> tuple[list[Row], list[Row], list[Row] | None]:
    """The rows of ``recurring_failures``, ``hung_runs`` and (with an alerts table) ``alerts_open``."""
    return (
        rows(con, "SELECT * FROM recurring_failures"),
        rows(con, "SELECT * FROM hung_runs ORDER BY start_time"),
        rows(con, "SELECT * FROM alerts_open ORDER BY opened_at DESC") if has_alerts else None,
    )


def _job_counts(recurring: list[Row], hung: list[Row], alerts: list[Row] | None) -> Row:
    found: Row = {"failing_jobs": sum(1 for row in recurring if row["current_streak"] > 0), "hung_runs": len(hung)}
    if alerts is not None:
        found["open_alerts"] = len(alerts)
    return found


def dataset_state(con: duckdb.DuckDBPyConnection) -> Row:
    """The state of the datasets at the views' now: stale datasets."""
    # stale_datasets' rows, counted without their root causes (which walk the lineage of the run views: 1 to 1.7 s
    # of a 200-job month, for a count that does not need them).
    return rows(con, "SELECT count(*) AS stale_datasets FROM dataset_status_latest WHERE is_stale")[0]


def state(con: duckdb.DuckDBPyConnection, has_alerts: bool) -> Row:
    """The figures that are a state at an instant (the views' now): :func:`job_state` and :func:`dataset_state`."""
    return job_state(con, has_alerts) | dataset_state(con)


@dataclasses.dataclass
class Trends:
    """The period's aggregates, from ``runtime_trend`` over :func:`trend_parameters`' window."""

    counts: Row
    """Finished runs and failures of the period and of the one before."""
    daily: list[Row]
    """Per job and day of the period (backfills apart): runs, failures, p50 and p95 duration."""
    daily_runs: list[Row]
    """Per day of the period: finished runs, failed ones."""
    failures_by_day: list[Row]
    """Per job and day of the period with a failure: the failures."""


_DAILY = """
SELECT job_name, run_date, is_backfill, runs, failures, p50_duration_ms, p95_duration_ms, records_processed
FROM runtime_trend
WHERE run_date >= $start AND run_date <= $today
ORDER BY job_name, run_date, is_backfill
"""


def recent_days(con: duckdb.DuckDBPyConnection, now: datetime.datetime, days: int) -> list[Row]:
    """Per job and day of the last ``days`` days up to ``now``, from the ``runtime_trend`` of ``con`` (the state
    views' connection: its ``job_runs_latest`` is computed once already), as :attr:`Trends.daily` has them."""
    return rows(con, _DAILY, {"start": now.date() - datetime.timedelta(days=days - 1), "today": now.date()})


def trends(trend: duckdb.DuckDBPyConnection, now: datetime.datetime, days: int) -> Trends:
    """The period's aggregates from the ``runtime_trend`` of ``trend`` (pinned at ``now``)."""
    start = period_start(now, days)
    window = {"start": start, "today": now.date()}
    return Trends(
        counts=rows(trend, _PERIOD_RUNS, window | {"previous_start": start - datetime.timedelta(days=days)})[0],
        daily=rows(trend, _DAILY, window),
        daily_runs=rows(trend, _DAILY_RUNS, window),
        failures_by_day=rows(trend, _FAILURES_BY_DAY, window),
    )


def figures(counts: Row, current: Row, previous: Row | None) -> list[Figure]:
    """The overview's numbers: runs and success rate of the period against the period before (``counts`` of
    :class:`Trends`), and the states of ``current`` against those of ``previous``."""
    found = [
        Figure("runs", counts["runs"], counts["previous_runs"], higher_is_better=True),
        Figure(
            "success rate",
            _rate(counts["runs"], counts["failures"]),
            _rate(counts["previous_runs"], counts["previous_failures"]),
            percent=True,
            higher_is_better=True,
        ),
    ]
    names = {"failing_jobs": "failing jobs", "stale_datasets": "stale datasets", "hung_runs": "hung runs"}
    names |= {"open_alerts": "open alerts"} if "open_alerts" in current else {}
    for key, name in names.items():
        found.append(Figure(name, current[key], previous.get(key) if previous else None))
    return found


def _rate(runs: int, failures: int) -> float | None:
    return 100.0 * (runs - failures) / runs if runs else None


# --- jobs -----------------------------------------------------------------------------------------------------

_RECENT_RUNS = """
SELECT *
FROM (
    SELECT
        job_name, run_id, attempt, status, start_time, end_time, duration_ms, records_processed, run_type,
        error_type, error_message, trace_id, span_id, dataset, owners, parent_job_name,
        row_number() OVER (PARTITION BY job_name ORDER BY start_time DESC, attempt DESC, run_id DESC) AS recency
    FROM job_runs_latest
)
WHERE recency <= $cap
ORDER BY job_name, recency
"""

_RECENT_OF_KIND = """
SELECT *
FROM (
    SELECT
        job_name, run_id, attempt, status, start_time, end_time, duration_ms, records_processed, run_type,
        error_type, error_message, trace_id, span_id, dataset, logical_date,
        row_number() OVER (
            PARTITION BY job_name ORDER BY start_time DESC, attempt DESC, run_id DESC
        ) AS recency
    FROM job_runs_latest
    WHERE {condition}
)
WHERE recency <= $cap
ORDER BY job_name, recency
"""


@dataclasses.dataclass
class JobStates:
    """What the jobs' views say now, read once: the rows :func:`jobs` and :func:`snapshot` put together."""

    state: Row
    recent: list[Row]
    recurring: list[Row]
    failed: list[Row]
    backfills: list[Row]
    anomalies: list[Row]
    hung: list[Row]
    alerts: list[Row] | None


def job_states(con: duckdb.DuckDBPyConnection, has_alerts: bool) -> JobStates:
    """The jobs' views of ``con`` (:data:`STATE_PARAMETERS`, pinned): states, recent runs, failures, backfills,
    anomalies, hung runs and, with an alerts table, the open alerts."""
    backfill = "coalesce(run_type, '') = 'backfill'"
    # Each view read once: the counts of the overview are those of the rows the pages list.
    recurring, hung, alerts = _job_views(con, has_alerts)
    return JobStates(
        state=_job_counts(recurring, hung, alerts),
        recent=rows(con, _RECENT_RUNS, {"cap": RECENT_RUNS}),
        recurring=recurring,
        failed=rows(con, _RECENT_OF_KIND.format(condition="status = 'FAILED'"), {"cap": RECENT_FAILURES}),
        backfills=rows(con, _RECENT_OF_KIND.format(condition=backfill), {"cap": RECENT_BACKFILLS}),
        anomalies=rows(con, "SELECT * FROM volume_anomalies ORDER BY job_name, end_time DESC"),
        hung=hung,
        alerts=alerts,
    )


def jobs(states: JobStates, trends: Trends) -> list[Job]:
    """Every job with a run in the state views' window or in the period, by name, with what its line and its page
    show."""
    by_name: dict[str, Job] = {}
    for run in states.recent:
        job = by_name.get(run["job_name"])
        if job is None:
            job = by_name[run["job_name"]] = Job(run["job_name"], run["status"], run["start_time"])
        job.recent.append(run)
    for day in trends.daily:
        job = by_name.get(day["job_name"])
        if job is None:  # no run in the state views' window: only its days of the period are known
            job = by_name[day["job_name"]] = Job(day["job_name"], "", None)
        job.daily.append(day)
        job.runs += day["runs"]
        job.failures += day["failures"]
    for failure in states.recurring:
        if failure["job_name"] in by_name:
            job = by_name[failure["job_name"]]
            job.current_streak = failure["current_streak"]
            job.last_error_type = failure["last_error_type"]
            job.last_error_message = failure["last_error_message"]
    _attach(by_name, states.failed, "failed_runs")
    _attach(by_name, states.backfills, "backfills")
    _attach(by_name, states.anomalies, "anomalies")
    _attach(by_name, sorted(states.hung, key=lambda row: (row["job_name"], row["start_time"])), "hung")
    return [by_name[name] for name in sorted(by_name)]


def _attach(by_name: dict[str, Job], found: list[Row], field: str) -> None:
    for row in found:
        job = by_name.get(row["job_name"])
        if job is not None:
            getattr(job, field).append(row)


_DAILY_RUNS = """
SELECT run_date, CAST(sum(runs) AS bigint) AS runs, CAST(sum(failures) AS bigint) AS failures
FROM runtime_trend
WHERE run_date >= $start AND run_date <= $today
GROUP BY run_date
ORDER BY run_date
"""

_FAILURES_BY_DAY = """
SELECT job_name, run_date, CAST(sum(failures) AS bigint) AS failures
FROM runtime_trend
WHERE run_date >= $start AND run_date <= $today AND failures > 0
GROUP BY job_name, run_date
ORDER BY job_name, run_date
"""


# --- datasets -------------------------------------------------------------------------------------------------

# An update is one (dataset, updated_at) of one span, as in dataset_status_latest: copies count once, and an update
# dated further ahead of its ingested_at than schema.FUTURE_TOLERANCE_DAYS is not one (a broken clock; the view
# future_dated_rows lists it). brought: the newest data the update brought, by the view's data_as_of rule (its
# watermark, else its time; its time when the watermark is that far ahead), the latest copy's; data_as_of: the
# newest brought by the successful updates up to it (this one included) of the days read, as the view would have
# said right after it (None before the first success of those days).
_UPDATES = """
SELECT *
FROM (
    SELECT
        *,
        row_number() OVER (PARTITION BY dataset ORDER BY updated_at DESC, span_id DESC) AS recency,
        max(CASE WHEN status = 'SUCCESS' THEN brought END) OVER (
            PARTITION BY dataset ORDER BY updated_at DESC, span_id DESC
            ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING
        ) AS data_as_of
    FROM (
        SELECT
            dataset, updated_at, status, records_written, record_count, job_name, run_id, trace_id, span_id,
            max(
                CASE
                    WHEN watermark > ingested_at + to_days($tolerance_days) THEN updated_at
                    ELSE coalesce(watermark, updated_at)
                END
            ) AS brought
        FROM dataset_status
        WHERE dt >= $start_text AND updated_at >= $start AND updated_at <= ingested_at + to_days($tolerance_days)
        GROUP BY ALL
    )
)
WHERE recency <= $cap
ORDER BY dataset, recency
"""

_WRITERS = """
SELECT dataset, job_name, count(*) AS updates, max(updated_at) AS last_update_at
FROM (
    SELECT DISTINCT dataset, updated_at, job_name, trace_id, span_id
    FROM dataset_status
    WHERE dt >= $start_text AND updated_at >= $start AND updated_at <= ingested_at + to_days($tolerance_days)
)
GROUP BY dataset, job_name
ORDER BY dataset, last_update_at DESC
"""


def update_days(days: int) -> int:
    """The days of a dataset's updates read one by one (its page): the period, at most the state views' window
    (a year of hourly updates is millions of rows; the freshness is the view's, over its own window)."""
    return min(days, STATE_PARAMETERS.window_days)


def datasets(con: duckdb.DuckDBPyConnection, now: datetime.datetime, days: int) -> list[Dataset]:
    """Every dataset of ``dataset_status_latest``, stale ones first, with its updates and writers of the last
    :func:`update_days` days."""
    found = {
        row["dataset"]: Dataset(row["dataset"], row)
        for row in rows(con, "SELECT * FROM dataset_status_latest ORDER BY is_stale DESC, dataset")
    }
    start = period_start(now, update_days(days))
    window = {"start_text": start.isoformat(), "start": start, "tolerance_days": FUTURE_TOLERANCE_DAYS}
    for update in rows(con, _UPDATES, window | {"cap": RECENT_UPDATES}):
        if update["dataset"] in found:
            found[update["dataset"]].updates.append(update)
    for writer in rows(con, _WRITERS, window):
        if writer["dataset"] in found:
            found[writer["dataset"]].writers.append(writer)
    return list(found.values())


@dataclasses.dataclass(frozen=True)
class FreshnessHistory:
    """A dataset's freshness over its recent updates: what its page charts."""

    points: list[Row]
    """``at`` (an instant) and ``minutes`` (the age of its newest data then), oldest first: a sawtooth, two points
    at each update that brought newer data (the age just before it, and just after), then one at now."""
    stale: list[Row]
    """``start`` and ``end`` of each stretch in which the age was above the SLA, oldest first."""
    sla_minutes: int | None
    """The SLA the view judges it by now (``dataset_status_latest.freshness_sla_minutes``, the latest given)."""


def freshness_history(dataset: Dataset, now: datetime.datetime) -> FreshnessHistory | None:
    """The age of ``dataset``'s newest data over its recent updates (:attr:`Dataset.updates`), as
    ``dataset_status_latest.freshness_minutes`` would have said at each instant: now minus ``data_as_of``.

    The ``data_as_of`` after each update is read with the updates (``_UPDATES``), by the view's rule: the newest
    watermark of the successful updates so far, or an update's time when it has none (a backfill written without
    one carries its logical date as its watermark, so it does not make the dataset look fresh), or when it is
    further ahead of its receipt than the view's tolerance; an update dated that far ahead is no update. So the
    age rises between updates and drops only at a successful update that brought newer data; a failed update, or
    a backfill of old data, leaves it rising. The SLA is the one the view judges by now, and a stretch is stale
    while the age is above it (the view's ``freshness_minutes > freshness_sla_minutes``).

    It starts at the first of those updates with a known ``data_as_of`` (the oldest of them, or the first success
    of the days read); when no update of the days read was a success, the view's ``data_as_of`` (older) held all
    along, from the oldest update read. Updates after ``now`` (a report of an earlier instant) are left out. None
    when nothing is known: no successful update ever. Only the days read are looked at (the view reads
    ``dataset_window_days``), so the age at now is the view's ``freshness_minutes`` (to the minute) unless an update
    older than those days brought newer data than all of theirs (a watermark ahead of its time)."""
    updates = [update for update in reversed(dataset.updates) if update["updated_at"] <= now]
    points: list[Row] = []
    as_of: datetime.datetime | None = None
    for update in updates:
        newest = update["data_as_of"]
        if newest is None or newest == as_of:  # nothing new: the age goes on rising
            continue
        if as_of is not None:
            points.append(_age(update["updated_at"], as_of))
        points.append(_age(update["updated_at"], newest))
        as_of = newest
    if as_of is None:
        as_of = dataset.status["data_as_of"]
        if as_of is None or not updates:
            return None
        points.append(_age(updates[0]["updated_at"], as_of))
    points.append(_age(now, as_of))
    sla = dataset.status["freshness_sla_minutes"]
    return FreshnessHistory(points, _stale_stretches(points, sla) if sla is not None else [], sla)


def _age(at: datetime.datetime, as_of: datetime.datetime) -> Row:
    return {"at": at, "minutes": (at - as_of).total_seconds() / 60}


def _stale_stretches(points: list[Row], sla: float) -> list[Row]:
    """Where the sawtooth of ``points`` is above ``sla``: on each rising stretch (one minute of age a minute) from
    where it crosses the SLA to its end; stretches that meet (a drop that stays above) are one."""
    stretches: list[Row] = []
    for before, after in zip(points, points[1:], strict=False):
        if after["at"] == before["at"] or after["minutes"] <= sla:
            continue
        start = before["at"] + datetime.timedelta(minutes=max(0.0, sla - before["minutes"]))
        if stretches and stretches[-1]["end"] == start:
            stretches[-1]["end"] = after["at"]
        else:
            stretches.append({"start": start, "end": after["at"]})
    return stretches


# --- structure: pipelines, lineage, checks -----------------------------------------------------------------------

# The newest parent runs of each pipeline (a parent job), then their child runs and the datasets each wrote (the
# dataset it names, and its updates of dataset_status in the views' window, as dataset_lineage reads them).
_GRID_RUNS = """
SELECT *
FROM (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY parent_job_name ORDER BY first_start_time DESC NULLS LAST, parent_run_id DESC
        ) AS recency
    FROM pipeline_runs
    WHERE parent_job_name IS NOT NULL
)
WHERE recency <= $cap
"""

_CHILD_RUNS = f"""
WITH grid AS ({_GRID_RUNS}),
written AS (
    SELECT job_name, run_id, list(DISTINCT dataset) AS datasets
    FROM dataset_status
    WHERE dt >= $start_text AND job_name IS NOT NULL AND run_id IS NOT NULL
    GROUP BY job_name, run_id
)
SELECT
    j.job_name, j.run_id, j.attempt, j.status, j.start_time, j.end_time, j.duration_ms, j.error_type,
    j.error_message, j.trace_id, j.span_id, j.dataset, j.inputs, j.owners, j.parent_job_name, j.parent_run_id,
    list_sort(list_distinct(list_concat(
        CASE WHEN j.dataset IS NULL THEN [] ELSE [j.dataset] END, coalesce(w.datasets, [])
    ))) AS written
FROM job_runs_latest AS j
JOIN grid AS g ON j.parent_job_name = g.parent_job_name AND j.parent_run_id IS NOT DISTINCT FROM g.parent_run_id
LEFT JOIN written AS w ON w.job_name = j.job_name AND w.run_id = j.run_id
ORDER BY j.parent_job_name, j.start_time, j.job_name, j.attempt
"""


def structure(con: duckdb.DuckDBPyConnection, now: datetime.datetime) -> Structure:
    """The pipelines (their :data:`GRID_RUNS` newest runs and the child runs of those) and the lineage, from the
    state views of ``con`` (:data:`STATE_PARAMETERS`, pinned); the checks are :func:`checks`."""
    start = period_start(now, STATE_PARAMETERS.window_days).isoformat()
    found: dict[str, Pipeline] = {}
    for run in rows(con, _GRID_RUNS + " ORDER BY parent_job_name, recency", {"cap": GRID_RUNS}):
        found.setdefault(run["parent_job_name"], Pipeline(run["parent_job_name"], [])).runs.append(run)
    for child in rows(con, _CHILD_RUNS, {"cap": GRID_RUNS, "start_text": start}):
        found[child["parent_job_name"]].children.append(child)
    lineage = rows(
        con,
        "SELECT * FROM dataset_lineage ORDER BY job_name, upstream_dataset NULLS FIRST, downstream_dataset NULLS FIRST",
    )
    return Structure(pipelines=[found[name] for name in sorted(found)], lineage=lineage)


def checks(con: duckdb.DuckDBPyConnection) -> list[Row]:
    """``dataset_checks_latest``: failing checks first, then by dataset and check."""
    return rows(con, "SELECT * FROM dataset_checks_latest ORDER BY status <> 'FAILED', dataset, check_name")


# --- SLAs -----------------------------------------------------------------------------------------------------

_SLAS = """
SELECT
    subject, kind, arg_max(rule, period_start) AS rule, max(deadline) AS last_deadline,
    arg_max(verdict, period_start) AS last_verdict, count(*) AS periods, count_if(verdict = 'met') AS met,
    count_if(verdict = 'met_late') AS met_late, count_if(verdict = 'missed') AS missed,
    round(100.0 * count_if(verdict = 'met') / count(*), 1) AS attainment_pct
FROM sla_verdicts
WHERE CAST(deadline AS date) >= $start
GROUP BY subject, kind
ORDER BY subject, kind
"""


def slas(con: duckdb.DuckDBPyConnection, now: datetime.datetime, days: int) -> list[Row]:
    """Per SLA (subject, kind) with a period due in the ``days`` days up to ``now`` (``sla_verdicts``): its rule,
    its latest period's deadline and verdict, and the period's counts: periods, met, met late, missed, attainment."""
    return rows(con, _SLAS, {"start": period_start(now, days)})


# --- all of it ------------------------------------------------------------------------------------------------


def snapshot(
    states: JobStates,
    trends: Trends,
    found_datasets: tuple[Row, list[Dataset]],
    now: datetime.datetime,
    days: int,
    previous: Row | None,
    found_slas: list[Row] | None = None,
) -> Snapshot:
    """What the report shows, put together from what the views said: the jobs' ``states`` (:func:`job_states`),
    the period's ``trends`` (:func:`trends`), the :func:`dataset_state` and :func:`datasets` (``found_datasets``),
    each read on a connection of its own; ``previous`` the :func:`state` at the period's start (None when
    unknown)."""
    current = states.state | found_datasets[0]
    return Snapshot(
        now=now,
        days=days,
        figures=figures(trends.counts, current, previous),
        jobs=jobs(states, trends),
        datasets=found_datasets[1],
        daily_runs=trends.daily_runs,
        failures_by_day=trends.failures_by_day,
        hung=states.hung,
        alerts=states.alerts,
        slas=found_slas or [],
    )
