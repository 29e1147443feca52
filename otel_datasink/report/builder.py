"""Building the report: the location's views -> :class:`~otel_datasink.report.data.Snapshot` -> charts -> page.

Both ``otel-datasink report`` (one file) and ``otel-datasink serve`` (the same page, rebuilt on a timer) call
:func:`build`.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from otel_datasink.catalog import ViewParameters
from otel_datasink.config import Options
from otel_datasink.report import charts as chart_specs
from otel_datasink.report import data
from otel_datasink.report.page import Charts, PageOptions, render
from otel_datasink.schema import TABLES

if TYPE_CHECKING:
    import duckdb

JOB_CHARTS = 40
"""Jobs whose page gets its chart (about 40 KB and 60 ms each): those needing attention first, then the busiest."""
DATASET_CHARTS = 40
"""Datasets whose page gets its chart: stale ones first."""
HEATMAP_JOBS = 30
"""Jobs in the failures heat map: those with the most failures."""
FRESHNESS_DATASETS = 40
"""Datasets in the freshness chart: stale ones first, then those nearest their SLA."""

Progress = Callable[[int], object]
"""Told how many charts were just drawn (a progress bar's ``update``)."""


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
) -> Report:
    """The report of ``options.location`` for the ``days`` days up to ``now`` (default: the clock).

    A location that exists but holds no table yet gives a page that says so; one that does not exist raises
    :class:`LocationMissingError`. ``on_total`` is told the number of charts to draw once it is known.
    """
    from otel_datasink import local

    started = time.monotonic()
    now = (now or datetime.datetime.now(datetime.timezone.utc)).astimezone(datetime.timezone.utc)
    generated = datetime.datetime.now(datetime.timezone.utc)
    page = PageOptions(options.location, trace_url, refresh_seconds, generated)
    parameters = data.view_parameters(days)
    try:
        con = local.connect(
            options.location, parameters=parameters, must_exist=True, s3_endpoint_url=options.s3_endpoint_url
        )
    except local.NoTablesError as error:
        if not _is_folder(options):
            raise LocationMissingError(str(error)) from error
        return Report(render(None, Charts(), page), time.monotonic() - started, 0, 0, 0)
    try:
        has_alerts = _has_table(options, "alerts")
        previous = _state_as_of(options, parameters, now - datetime.timedelta(days=days), has_alerts)
        _pin(con, now, parameters)
        snapshot = data.snapshot(con, now, days, has_alerts, previous)
    finally:
        con.close()
    drawn = draw(snapshot, progress, on_total)
    html = render(snapshot, drawn, page)
    count = (
        len(drawn.sparklines)
        + len(drawn.jobs)
        + len(drawn.datasets)
        + sum(1 for svg in (drawn.runs_per_day, drawn.failures, drawn.freshness) if svg)
    )
    return Report(html, time.monotonic() - started, count, len(snapshot.jobs), len(snapshot.datasets))


def _is_folder(options: Options) -> bool:
    from otel_datasink.writer import open_location

    fs, root = open_location(options)
    return bool(fs.isdir(root))


def _has_table(options: Options, table: str) -> bool:
    from otel_datasink.writer import open_location

    fs, root = open_location(options)
    return bool(fs.isdir(f"{root}/{table}"))


def _pin(con: duckdb.DuckDBPyConnection, now: datetime.datetime, parameters: ViewParameters) -> None:
    from otel_datasink.alerts.conditions import pin_time

    pin_time(con, now, parameters)


def _state_as_of(options: Options, parameters: ViewParameters, then: datetime.datetime, has_alerts: bool) -> data.Row:
    """:func:`data.state` as the views would have answered at ``then``: over the rows whose ``event_time`` is not
    later (a run still going then is the STARTED row it had), the views pinned at ``then``."""
    from otel_datasink import local

    con = local.connect(options.location, parameters=parameters, s3_endpoint_url=options.s3_endpoint_url)
    try:
        instant = then.strftime("%Y-%m-%d %H:%M:%S.%f")
        for table in TABLES:
            con.execute(f"ALTER VIEW {table} RENAME TO _{table}_all")
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM _{table}_all "
                f"WHERE event_time <= CAST('{instant}+00' AS TIMESTAMPTZ)"
            )
        _pin(con, then, parameters)
        return data.state(con, has_alerts)
    finally:
        con.close()


def draw(
    snapshot: data.Snapshot, progress: Progress | None = None, on_total: Callable[[int], object] | None = None
) -> Charts:
    """Renders the page's charts, a few at once (vl-convert renders in threads of its own)."""
    charts = Charts(job_chart_cap=JOB_CHARTS, dataset_chart_cap=DATASET_CHARTS)
    tasks: dict[tuple[str, str], chart_specs.Spec] = {}
    if snapshot.daily_runs:
        tasks["overview", "runs"] = chart_specs.runs_per_day(
            snapshot.daily_runs, snapshot.period_start, snapshot.now.date()
        )
    heat_jobs = _most_failing(snapshot)
    if heat_jobs:
        cells = [row for row in snapshot.failures_by_day if row["job_name"] in set(heat_jobs)]
        end = snapshot.now.date()
        tasks["overview", "failures"] = chart_specs.failure_heatmap(cells, heat_jobs, snapshot.period_start, end)
        charts.failures_jobs = len(heat_jobs)
    fresh = _stalest(snapshot)
    if fresh:
        tasks["overview", "freshness"] = chart_specs.freshness(fresh)
        charts.freshness_datasets = len(fresh)
    for job in snapshot.jobs:
        if any(not d["is_backfill"] and d["p50_duration_ms"] is not None for d in job.daily):
            tasks["spark", job.name] = chart_specs.sparkline(job.daily)
    for job in _charted_jobs(snapshot):
        spec = chart_specs.job_detail(job.recent, job.daily, job.anomalies)
        if spec is not None:
            tasks["job", job.name] = spec
    for dataset in [d for d in snapshot.datasets if d.updates][:DATASET_CHARTS]:
        tasks["dataset", dataset.name] = chart_specs.dataset_updates(dataset.updates)
    if on_total is not None:
        on_total(len(tasks))
    for (kind, name), svg in _render_all(tasks, progress):
        if kind == "overview":
            setattr(charts, {"runs": "runs_per_day"}.get(name, name), svg)
        else:
            {"spark": charts.sparklines, "job": charts.jobs, "dataset": charts.datasets}[kind][name] = svg
    return charts


def _render_all(
    tasks: dict[tuple[str, str], chart_specs.Spec], progress: Progress | None
) -> Iterator[tuple[tuple[str, str], str]]:
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="report-chart") as pool:
        for key, svg in zip(tasks, pool.map(chart_specs.svg, tasks.values()), strict=True):
            if progress is not None:
                progress(1)
            yield key, svg


def _most_failing(snapshot: data.Snapshot) -> list[str]:
    totals: dict[str, int] = {}
    for row in snapshot.failures_by_day:
        totals[row["job_name"]] = totals.get(row["job_name"], 0) + row["failures"]
    return sorted(totals, key=lambda name: (-totals[name], name))[:HEATMAP_JOBS]


def _stalest(snapshot: data.Snapshot) -> list[data.Row]:
    def ratio(row: data.Row) -> float:
        if row["freshness_minutes"] is None or not row["freshness_sla_minutes"]:
            return 0.0
        return float(row["freshness_minutes"]) / float(row["freshness_sla_minutes"])

    ranked = sorted((d.status for d in snapshot.datasets), key=lambda r: (not r["is_stale"], -ratio(r), r["dataset"]))
    return ranked[:FRESHNESS_DATASETS]


def _charted_jobs(snapshot: data.Snapshot) -> list[data.Job]:
    """The jobs whose page gets its chart: those needing attention (worst first), then the busiest."""

    def rank(job: data.Job) -> tuple[int, int, int, int, int, str]:
        return (
            not job.needs_attention,
            -job.current_streak,
            -len(job.hung),
            -len(job.anomalies),
            -job.failures if job.needs_attention else -job.runs,
            job.name,
        )

    return sorted((job for job in snapshot.jobs if job.recent), key=rank)[:JOB_CHARTS]
