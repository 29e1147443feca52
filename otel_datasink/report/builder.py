"""Building the report: the location's views -> :class:`~otel_datasink.report.data.Snapshot` -> charts -> page.

Both ``otel-datasink report`` (one file) and ``otel-datasink serve`` (the same page, rebuilt on a timer) call
:func:`build`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from otel_datasink.catalog import ViewParameters, pin_time
from otel_datasink.config import Options
from otel_datasink.report import charts as chart_specs
from otel_datasink.report import data
from otel_datasink.report.page import Charts, PageOptions, attention_order, render
from otel_datasink.schema import PARTITION_COLUMN, ROLLUPS, TABLES

if TYPE_CHECKING:
    import duckdb

_logger = logging.getLogger(__name__)

JOB_CHARTS = 20
"""Jobs whose page gets its chart (about 30 KB and 60 ms each): those needing attention first, then the busiest."""
DATASET_CHARTS = 20
"""Datasets whose page gets its chart: stale ones first."""
HEATMAP_JOBS = 30
"""Jobs in the failures heat map: those with the most failures."""
FRESHNESS_DATASETS = 40
"""Datasets in the freshness chart: stale ones first, then those nearest their SLA."""

_T = TypeVar("_T")
Progress = Callable[[int], object]
"""Told how many charts were just drawn (a progress bar's ``update``)."""
Drawn = dict[tuple[str, str], str]
"""SVGs by (kind, name): ("overview", "runs" | "failures" | "freshness"), ("spark" | "job" | "dataset" |
"dataset-freshness", name)."""


class LocationMissingError(FileNotFoundError):
    """The location does not exist (or is a file): there is nothing to report on, not even an empty page."""


@dataclasses.dataclass(frozen=True)
class Report:
    """A built page and what it took."""

    html: str
    seconds: float
    charts: int
    jobs: int
    datasets: int


def build(
    options: Options,
    days: int = 30,
    now: datetime.datetime | None = None,
    trace_url: str | None = None,
    refresh_seconds: int | None = None,
    progress: Progress | None = None,
    on_total: Callable[[int], object] | None = None,
    run_url: str | None = None,
) -> Report:
    """The report of ``options.location`` for the ``days`` days up to ``now`` (default: the clock).

    A location that exists but holds no table yet gives a page that says so; one that does not exist raises
    :class:`LocationMissingError`. ``on_total`` is told the number of charts to draw, as it grows. ``trace_url`` and
    ``run_url`` are the link templates of ``--trace-url`` and ``--run-url`` (a run's trace, its orchestrator's
    page).
    """
    from otel_datasink import local

    started = time.monotonic()
    now = (now or datetime.datetime.now(datetime.timezone.utc)).astimezone(datetime.timezone.utc)
    generated = datetime.datetime.now(datetime.timezone.utc)
    page = PageOptions(options.location, trace_url, refresh_seconds, generated, run_url)
    try:
        con = _connect(options, data.STATE_PARAMETERS, must_exist=True)
    except local.NoTablesError as error:
        if not _is_folder(options):
            raise LocationMissingError(str(error)) from error
        return Report(render(None, Charts(), page), time.monotonic() - started, 0, 0, 0)
    has_alerts = _has_table(options, "alerts")
    counter = _Counter(progress, on_total)
    # Four evaluations of the views, each on a connection of its own, overlapping (DuckDB and vl-convert release
    # the GIL, and a view's ranking keeps one core busy, not all): the jobs' states now (here), the datasets'
    # (dataset_status_latest is the costliest view), the states at the period's start, and the period's
    # aggregates. The charts of each part are drawn as soon as it is read, while the others are still computed.
    then = now - datetime.timedelta(days=days)
    with ThreadPoolExecutor(max_workers=5, thread_name_prefix="report") as pool:
        previous = pool.submit(_timed("previous states", _state_as_of), options, then, has_alerts)
        trends = pool.submit(_timed("period aggregates", _trends), options, now, days)
        found_datasets = pool.submit(_timed("datasets", _datasets), options, now, days)
        trend_charts = pool.submit(
            _timed("period charts", lambda: _draw(_trend_specs(trends.result(), now, days), counter))
        )
        dataset_charts = pool.submit(
            _timed("dataset charts", lambda: _draw(_dataset_specs(found_datasets.result()[1], now), counter))
        )
        try:
            with _phase("jobs"):
                pin_time(con, now, data.STATE_PARAMETERS, ("job_runs_latest",))
                states = data.job_states(con, has_alerts)
                daily = data.recent_days(con, now, chart_specs.SPARKLINE_DAYS)
                structure = data.structure(con, now)
                slas = data.slas(con, now, days)
        finally:
            con.close()
        # The jobs' sparklines need only the last days, which the states' connection has: drawn while the period's
        # aggregates (a year's, for --days 365) are still computed, not after them.
        with _phase("sparklines"):
            drawn = _draw(_spark_specs(daily), counter)
        dataset_state, dataset_list, structure.checks = found_datasets.result()
        snapshot = data.snapshot(
            states, trends.result(), (dataset_state, dataset_list), now, days, previous.result(), slas
        )
        snapshot.structure = structure
        with _phase("job charts"):
            drawn.update(_draw(_job_specs(snapshot), counter))
        drawn.update(trend_charts.result())
        drawn.update(dataset_charts.result())
    html = render(snapshot, _charts(drawn, snapshot), page)
    return Report(html, time.monotonic() - started, len(drawn), len(snapshot.jobs), len(snapshot.datasets))


@contextlib.contextmanager
def _phase(name: str) -> Iterator[None]:
    """Logs how long a part of the build took (``-v``): where the time of a slow report goes."""
    started = time.monotonic()
    yield
    _logger.info("%s: %.1fs", name, time.monotonic() - started)


def _timed(name: str, function: Callable[..., _T]) -> Callable[..., _T]:
    def timed(*args: object) -> _T:
        with _phase(name):
            return function(*args)

    return timed


def _is_folder(options: Options) -> bool:
    from otel_datasink.location import open_location

    fs, root = open_location(options)
    return bool(fs.isdir(root))


def _has_table(options: Options, table: str) -> bool:
    from otel_datasink.location import open_location, table_path

    fs, root = open_location(options)
    return bool(fs.isdir(table_path(root, table)))


def _connect(options: Options, parameters: ViewParameters, must_exist: bool = False) -> duckdb.DuckDBPyConnection:
    from otel_datasink import local

    return local.connect(
        options.location, parameters=parameters, must_exist=must_exist, s3_endpoint_url=options.s3_endpoint_url
    )


def _state_as_of(options: Options, then: datetime.datetime, has_alerts: bool) -> data.Row:
    """:func:`data.state` as the views would have answered at ``then``: over the rows whose ``event_time`` is not
    later (a run still going then is the STARTED row it had), the views pinned at ``then``; the rollups of the
    days before ``then``'s (the views read the rows of the days after them)."""
    con = _connect(options, data.STATE_PARAMETERS)
    try:
        instant = then.strftime("%Y-%m-%d %H:%M:%S.%f")
        before = dict.fromkeys(TABLES, f"event_time <= CAST('{instant}+00' AS TIMESTAMPTZ)")
        before.update(dict.fromkeys(ROLLUPS, f"{PARTITION_COLUMN} < '{instant[:10]}'"))
        for table, condition in before.items():
            con.execute(f"ALTER VIEW {table} RENAME TO _{table}_all")
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}_all WHERE {condition}")
        pin_time(con, then, data.STATE_PARAMETERS, ("job_runs_latest",))
        return data.state(con, has_alerts)
    finally:
        con.close()


def _datasets(
    options: Options, now: datetime.datetime, days: int
) -> tuple[data.Row, list[data.Dataset], list[data.Row]]:
    """:func:`data.dataset_state`, :func:`data.datasets` and :func:`data.checks` at ``now``,
    ``dataset_status_latest`` computed once."""
    con = _connect(options, data.STATE_PARAMETERS)
    try:
        pin_time(con, now, data.STATE_PARAMETERS, ("dataset_status_latest",))
        return data.dataset_state(con), data.datasets(con, now, days), data.checks(con)
    finally:
        con.close()


def _trends(options: Options, now: datetime.datetime, days: int) -> data.Trends:
    """The period's aggregates (:func:`data.trends`) from a connection whose views read the period and the one
    before (:func:`data.trend_parameters`), pinned at ``now``, ``runtime_trend`` computed once."""
    from otel_datasink.rollup import read_open_days

    parameters = data.trend_parameters(days)
    con = _connect(options, parameters)
    try:
        read_open_days(con, options)  # runtime_trend reads the rollups: the rows of the closed days are not needed
        pin_time(con, now, parameters, ("runtime_trend",))
        return data.trends(con, now, days)
    finally:
        con.close()


# --- the charts -----------------------------------------------------------------------------------------------


class _Counter:
    """Tells the progress bar of the charts to draw (as they become known) and of those drawn, from any thread."""

    def __init__(self, progress: Progress | None, on_total: Callable[[int], object] | None) -> None:
        self.progress, self.on_total = progress, on_total
        self.total = 0
        self.lock = threading.Lock()

    def add(self, count: int) -> None:
        with self.lock:
            self.total += count
            if self.on_total is not None:
                self.on_total(self.total)

    def done(self) -> None:
        if self.progress is not None:
            with self.lock:
                self.progress(1)


def _draw(specs: dict[tuple[str, str], chart_specs.Spec], counter: _Counter) -> Drawn:
    counter.add(len(specs))
    drawn: Drawn = {}
    for key, spec in specs.items():
        drawn[key] = chart_specs.svg(spec)
        counter.done()
    return drawn


def _trend_specs(trends: data.Trends, now: datetime.datetime, days: int) -> dict[tuple[str, str], chart_specs.Spec]:
    """The charts of the period's aggregates: runs per day, the failures heat map."""
    start, end = data.period_start(now, days), now.date()
    specs: dict[tuple[str, str], chart_specs.Spec] = {}
    if trends.daily_runs:
        specs["overview", "runs"] = chart_specs.runs_per_day(trends.daily_runs, start, end)
    heat_jobs = _most_failing(trends.failures_by_day)
    if heat_jobs:
        cells = [row for row in trends.failures_by_day if row["job_name"] in set(heat_jobs)]
        specs["overview", "failures"] = chart_specs.failure_heatmap(cells, heat_jobs, start, end)
    return specs


def _spark_specs(daily: list[data.Row]) -> dict[tuple[str, str], chart_specs.Spec]:
    """Each job's sparkline (p50 duration per day), from its rows of ``daily``; none for a job with no point."""
    by_job: dict[str, list[data.Row]] = {}
    for row in daily:
        by_job.setdefault(row["job_name"], []).append(row)
    return {
        ("spark", name): chart_specs.sparkline(rows)
        for name, rows in by_job.items()
        if any(not row["is_backfill"] and row["p50_duration_ms"] is not None for row in rows)
    }


def _dataset_specs(datasets: list[data.Dataset], now: datetime.datetime) -> dict[tuple[str, str], chart_specs.Spec]:
    """The datasets' charts: freshness, and the pages of the stalest datasets (their updates, and their freshness
    over those)."""
    specs: dict[tuple[str, str], chart_specs.Spec] = {}
    fresh = _stalest(datasets)
    if fresh:
        specs["overview", "freshness"] = chart_specs.freshness(fresh)
    for dataset in [d for d in datasets if d.updates][:DATASET_CHARTS]:
        specs["dataset", dataset.name] = chart_specs.dataset_updates(dataset.updates)
        history = data.freshness_history(dataset, now)
        if history is not None:
            specs["dataset-freshness", dataset.name] = chart_specs.dataset_freshness(history)
    return specs


def _job_specs(snapshot: data.Snapshot) -> dict[tuple[str, str], chart_specs.Spec]:
    """The charts of the pages of the jobs that need attention most."""
    specs: dict[tuple[str, str], chart_specs.Spec] = {}
    for job in _charted_jobs(snapshot):
        spec = chart_specs.job_detail(job.recent, job.daily, job.anomalies)
        if spec is not None:
            specs["job", job.name] = spec
    return specs


def _charts(drawn: Drawn, snapshot: data.Snapshot) -> Charts:
    overview = {name: svg for (kind, name), svg in drawn.items() if kind == "overview"}
    return Charts(
        runs_per_day=overview.get("runs", ""),
        failures=overview.get("failures", ""),
        failures_jobs=len(_most_failing(snapshot.failures_by_day)),
        freshness=overview.get("freshness", ""),
        freshness_datasets=min(len(snapshot.datasets), FRESHNESS_DATASETS),
        sparklines={name: svg for (kind, name), svg in drawn.items() if kind == "spark"},
        jobs={name: svg for (kind, name), svg in drawn.items() if kind == "job"},
        datasets={name: svg for (kind, name), svg in drawn.items() if kind == "dataset"},
        dataset_freshness={name: svg for (kind, name), svg in drawn.items() if kind == "dataset-freshness"},
        job_chart_cap=JOB_CHARTS,
        dataset_chart_cap=DATASET_CHARTS,
    )


def _most_failing(failures_by_day: list[data.Row]) -> list[str]:
    totals: dict[str, int] = {}
    for row in failures_by_day:
        totals[row["job_name"]] = totals.get(row["job_name"], 0) + row["failures"]
    return sorted(totals, key=lambda name: (-totals[name], name))[:HEATMAP_JOBS]


def _stalest(datasets: list[data.Dataset]) -> list[data.Row]:
    def ratio(row: data.Row) -> float:
        if row["freshness_minutes"] is None or not row["freshness_sla_minutes"]:
            return 0.0
        return float(row["freshness_minutes"]) / float(row["freshness_sla_minutes"])

    ranked = sorted((d.status for d in datasets), key=lambda r: (not r["is_stale"], -ratio(r), r["dataset"]))
    return ranked[:FRESHNESS_DATASETS]


def _charted_jobs(snapshot: data.Snapshot) -> list[data.Job]:
    """The jobs whose page gets its chart: those needing attention (worst first), then the busiest."""
    return [job for job in attention_order(snapshot.jobs) if job.recent][:JOB_CHARTS]
