"""The report as one self-contained HTML page: styles, charts (inline SVG) and a small script of our own, with
no reference to anything outside the file, so that it opens offline (an e-mail attachment, an S3 link).

The overview, the jobs list, the failures heat map and the datasets are sections of the page; each job and each
dataset has a section of its own, shown alone when the address names it (``#job-...``, CSS ``:target``), so a
link to one works without the script. Every string from the data is escaped (:func:`html.escape`); the SVG
comes from vl-convert, which escapes the text it draws.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import re
import string
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

from otel_datasink.alerts.escaping import fill_link
from otel_datasink.report import data, graphs
from otel_datasink.report.charts import SPARKLINE_DAYS, STATUS_COLORS, bucket_days
from otel_datasink.report.data import Dataset, Figure, Job, Pipeline, Row, Snapshot
from otel_datasink.report.graphs import HEALTH_STYLES, Lineage, Node, gantt_svg, lineage_svg

STRIP_RUNS = 24
"""Runs in a job's status strip (of the :data:`otel_datasink.report.data.RECENT_RUNS` read)."""
OVERVIEW_ROWS = 20
"""Hung runs and open alerts listed on the overview (the longest-running, the latest); each job's page has its own."""
MESSAGE_CHARS = 400
"""An error message is cut to this on the page (the table keeps up to 32 KiB)."""
RUN_PAGES = 3
"""Parent runs per pipeline with a page of their own (Gantt, errors, datasets): its failed runs of the grid first,
then its newest."""
SHORT_ID = 12
"""A run id longer than this is shown short (its first 8 characters, or its time), the whole id on hover."""

# The caps that keep the file under 5 MB on a platform of thousands of jobs (a page is a few KB, a charted one
# about 50): each says on the page what it left out. Measured on 500 hourly jobs in 20 pipelines (about 4 MB).
LIST_ROWS = 500
"""Rows of the jobs, datasets, pipelines and checks lists (about 2 KB a job's, with its strip and sparkline): those
needing attention first."""
JOB_PAGES = 150
"""Jobs with a page of their own (about 3 KB; every charted job has one): those needing attention first, then the
busiest. The others' names are not links."""
DATASET_PAGES = 150
"""Datasets with a page of their own (about 5 KB with its lineage; every charted dataset has one): stale first."""
PIPELINE_PAGES = 20
"""Pipelines with a page (their grid) and run pages: those whose last run failed first."""
GRID_TASKS = 30
"""Tasks in a pipeline's grid and in a run's page (a dbt project has hundreds): those that failed or run first."""


@dataclasses.dataclass
class Charts:
    """The SVG of each chart of the page (an empty string: not drawn)."""

    runs_per_day: str = ""
    failures: str = ""
    failures_jobs: int = 0
    """Jobs in the heat map (those with the most failures)."""
    freshness: str = ""
    freshness_datasets: int = 0
    sparklines: dict[str, str] = dataclasses.field(default_factory=dict)
    jobs: dict[str, str] = dataclasses.field(default_factory=dict)
    datasets: dict[str, str] = dataclasses.field(default_factory=dict)
    dataset_freshness: dict[str, str] = dataclasses.field(default_factory=dict)
    """Each charted dataset's freshness over time (when known)."""
    job_chart_cap: int = 0
    dataset_chart_cap: int = 0


@dataclasses.dataclass(frozen=True)
class PageOptions:
    """What the page says of where it comes from and how it links out."""

    location: str
    trace_url: str | None = None
    refresh_seconds: int | None = None
    """``serve``: the browser reloads the page this often."""
    generated_at: datetime.datetime | None = None
    run_url: str | None = None
    """``--run-url``: a run's page in its orchestrator, filled from the run (fields as ``alert --run-url``)."""


def anchor(kind: str, name: str) -> str:
    """The id of a job's or a dataset's section: a hash, so that any name makes a valid, unique id."""
    return f"{kind}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def render(snapshot: Snapshot | None, charts: Charts, options: PageOptions) -> str:
    """The page; ``snapshot`` None for a location that holds no table yet."""
    if snapshot is None or snapshot.empty:
        body = _empty(options, snapshot)
        period = ""
    else:
        body = _body(snapshot, charts, options)
        period = f"{snapshot.days} days to {_when(snapshot.now)} (UTC; from {snapshot.period_start.isoformat()})"
    generated = options.generated_at or datetime.datetime.now(datetime.timezone.utc)
    refresh = f'<meta http-equiv="refresh" content="{options.refresh_seconds}">' if options.refresh_seconds else ""
    return _PAGE.substitute(
        title=escape(f"otel-datasink: {options.location}"),
        refresh=refresh,
        style=_STYLE,
        location=escape(options.location),
        period=escape(period),
        generated=escape(_when(generated)),
        body=body,
        script=_SCRIPT,
        policy=CONTENT_SECURITY_POLICY,
        nav="".join(f'<a href="#{section}">{section.title()}</a>' for section in _SECTIONS),
        owners=_owner_filter(snapshot),
    )


def _empty(options: PageOptions, snapshot: Snapshot | None) -> str:
    if snapshot is None:
        what = "holds no job run and no dataset update yet"
    else:  # tables, but nothing in the views' windows: the jobs stopped long ago, or the location is another's
        what = f"holds no job run of the last {snapshot.days} days and no dataset update the views read"
    return (
        f'<section id="overview"><h2>No data yet</h2><p class="empty">{escape(options.location)} {what}: once a '
        "job has run with otel-datasink configured, its runs show here.</p></section>"
    )


def _body(snapshot: Snapshot, charts: Charts, options: PageOptions) -> str:
    owners = _Owners.of(snapshot)
    shown = _Shown.of(snapshot, charts)
    parts = [
        _overview(snapshot, charts, shown),
        _jobs(snapshot, charts, owners, shown),
        _pipelines(snapshot, owners, shown),
        _failures(snapshot, charts),
        _datasets(snapshot, charts, owners, shown),
        _checks(snapshot.structure.checks, owners, shown),
    ]
    parts.extend(_job_page(job, snapshot, charts, options) for job in shown.job_pages)
    for pipeline in shown.pipeline_pages:
        parts.append(_pipeline_page(pipeline, shown))
        parts.extend(_run_page(pipeline, run, snapshot, options, shown) for run in _paged_runs(pipeline))
    health = _health(snapshot)
    lineage = Lineage.of(snapshot.structure.lineage)
    parts.extend(_dataset_page(dataset, charts, snapshot, lineage, health, shown) for dataset in shown.dataset_pages)
    return "\n".join(parts)


def attention_order(jobs: Iterable[Job]) -> list[Job]:
    """The jobs needing attention first (failing longest, hung runs, anomalies, most failures), then the busiest:
    who gets a chart, a page and a row when there are more than the caps."""

    def rank(job: Job) -> tuple[int, int, int, int, int, str]:
        return (
            not job.needs_attention,
            -job.current_streak,
            -len(job.hung),
            -len(job.anomalies),
            -job.failures if job.needs_attention else -job.runs,
            job.name,
        )

    return sorted(jobs, key=rank)


def _first(items: Sequence[Any], ranked: Sequence[Any], cap: int, also: Iterable[Any] = ()) -> list[Any]:
    """``items`` in their order, those among the first ``cap`` of ``ranked`` (and ``also``) only."""
    if len(items) <= cap:
        return list(items)
    kept = {id(item) for item in ranked[:cap]} | {id(item) for item in also}
    return [item for item in items if id(item) in kept]


@dataclasses.dataclass(frozen=True)
class _Shown:
    """What the file holds of a platform larger than its caps: each list's rows and the pages written (links go
    only to those)."""

    jobs: list[Job]
    """The jobs list's rows (jobs that run on their own)."""
    datasets: list[Dataset]
    pipelines: list[Pipeline]
    job_pages: list[Job]
    dataset_pages: list[Dataset]
    pipeline_pages: list[Pipeline]
    anchors: frozenset[str]

    @classmethod
    def of(cls, snapshot: Snapshot, charts: Charts) -> _Shown:
        """The rows and pages within the caps: those needing attention first, each charted one with its page."""
        ranked = attention_order(snapshot.jobs)
        alone = [job for job in snapshot.jobs if job.parent is None]
        jobs = _first(alone, [job for job in ranked if job.parent is None], LIST_ROWS)
        charted_jobs = [job for job in snapshot.jobs if job.name in charts.jobs]
        job_pages = _first(snapshot.jobs, ranked, JOB_PAGES, charted_jobs)
        # The datasets come stale first (dataset_status_latest's order): the first ones are those to look at.
        datasets = snapshot.datasets[:LIST_ROWS]
        charted = [d for d in snapshot.datasets if d.name in charts.datasets]
        dataset_pages = _first(snapshot.datasets, snapshot.datasets, DATASET_PAGES, charted)
        pipelines = snapshot.structure.pipelines
        failing = sorted(pipelines, key=lambda pipeline: pipeline.runs[0]["failed"] == 0)
        pipeline_pages = _first(pipelines, failing, PIPELINE_PAGES)
        anchors = {anchor("job", job.name) for job in job_pages} | {anchor("dataset", d.name) for d in dataset_pages}
        anchors |= {pipeline_anchor(pipeline.name) for pipeline in pipeline_pages}
        listed = _first(pipelines, failing, LIST_ROWS)
        return cls(jobs, datasets, listed, job_pages, dataset_pages, pipeline_pages, frozenset(anchors))

    def link(self, kind: str, name: str) -> str:
        """A job's or a dataset's name, linking to its page if the file has it."""
        target = anchor(kind, name)
        if target not in self.anchors:  # the list's note says which have a page
            return escape(name)
        return f'<a href="#{target}">{escape(name)}</a>'

    def job(self, name: str) -> str:
        """A job's name, linking to its page if the file has it."""
        return self.link("job", name)

    def dataset(self, name: str) -> str:
        """A dataset's name, linking to its page if the file has it."""
        return self.link("dataset", name)

    def node_href(self, node: Node) -> str:
        """A lineage node's link: its page's anchor, or nothing."""
        target = anchor(*node)
        return "#" + target if target in self.anchors else ""


# --- overview ---------------------------------------------------------------------------------------------------


def _overview(snapshot: Snapshot, charts: Charts, shown: _Shown) -> str:
    tiles = "".join(_tile(figure, snapshot.days) for figure in snapshot.figures)
    parts = [f'<section id="overview"><h2>Overview</h2><div class="tiles">{tiles}</div>']
    if charts.runs_per_day:
        parts.append(
            f'<figure class="chart">{charts.runs_per_day}<figcaption>Finished runs per {_unit(snapshot)} '
            "(the UTC day they started).</figcaption></figure>"
        )
    if snapshot.hung:
        longest = f"(the {OVERVIEW_ROWS} longest of {len(snapshot.hung)})" if len(snapshot.hung) > OVERVIEW_ROWS else ""
        parts.append(f"<h3>Hung runs <small>{longest}</small></h3>")
        parts.append(
            _table(
                ("job", "run", "attempt", "started", "running", "threshold"),
                (
                    (
                        shown.job(row["job_name"]),
                        short_run_id(row["run_id"]),
                        row["attempt"],
                        _when(row["start_time"]),
                        f"{row['running_minutes']} min",
                        f"{row['threshold_minutes']:.0f} min",
                    )
                    for row in snapshot.hung[:OVERVIEW_ROWS]
                ),
                css="hung",
            )
        )
    if snapshot.alerts:
        latest = (
            f"(the {OVERVIEW_ROWS} latest of {len(snapshot.alerts)})" if len(snapshot.alerts) > OVERVIEW_ROWS else ""
        )
        parts.append(f"<h3>Open alerts <small>{latest}</small></h3>")
        parts.append(
            _table(
                ("kind", "subject", "severity", "opened", "summary"),
                (
                    (
                        escape(row["kind"]),
                        escape(str(row["subject"])),
                        escape(str(row["severity"])),
                        _when(row["opened_at"]),
                        escape(str(row["summary"] or "")),
                    )
                    for row in snapshot.alerts[:OVERVIEW_ROWS]
                ),
                css="alerts",
            )
        )
    parts.append(_slas(snapshot))
    parts.append("</section>")
    return "\n".join(parts)


def _slas(snapshot: Snapshot) -> str:
    """The SLAs card: how many periods were missed (or met late) in the period, and per SLA the state of its latest
    period (at risk while a ``deadline_at_risk`` alert of its subject is open) and its attainment."""
    if not snapshot.slas:
        return ""
    at_risk = {row["subject"] for row in snapshot.alerts or () if row["kind"] == "deadline_at_risk"}
    missed = sum(row["missed"] + row["met_late"] for row in snapshot.slas)
    return f"<h3>SLAs <small>{missed} missed in the {snapshot.days} days</small></h3>" + _table(
        ("subject", "SLA", "latest period due", "state", "periods", "met", "met late", "missed", "attainment"),
        (
            (
                escape(str(row["subject"])),
                escape(str(row["rule"])),
                _when(row["last_deadline"]),
                "at risk" if row["subject"] in at_risk else row["last_verdict"].replace("_", " "),
                row["periods"],
                row["met"],
                row["met_late"],
                row["missed"],
                f"{row['attainment_pct']:.1f} %",
            )
            for row in snapshot.slas
        ),
        css="slas",
    )


def _unit(snapshot: Snapshot) -> str:
    return "week" if bucket_days(snapshot.period_start, snapshot.now.date()) > 1 else "day"


def _tile(figure: Figure, days: int) -> str:
    value = _number(figure.value, figure.percent)
    periodic = figure.name in ("runs", "success rate")
    if figure.value is None or figure.previous is None:
        change, css = f"no figure for the previous {days} days" if periodic else f"no figure {days} days ago", "same"
    else:
        before = _number(figure.previous, figure.percent)
        versus = f"{before} in the previous {days} days" if periodic else f"{before} {days} days ago"
        delta = figure.value - figure.previous
        sign = "▲" if delta > 0 else "▼" if delta < 0 else "="
        amount = f"{abs(delta):.{1 if abs(delta) >= 0.1 else 2}f} pts" if figure.percent else f"{abs(delta):,.0f}"
        change = f"{sign} {amount}, vs {versus}" if delta else f"= vs {versus}"
        better = (delta > 0) == figure.higher_is_better
        css = "same" if not delta else "better" if better else "worse"
    raw = "" if figure.value is None else f"{figure.value:g}"
    return (
        f'<div class="tile" data-figure="{escape(figure.name)}" data-value="{raw}">'
        f'<div class="value">{value}</div><div class="name">{escape(figure.name)}</div>'
        f'<div class="change {css}">{escape(change)}</div></div>'
    )


def _number(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}%" if percent else f"{value:,.0f}"


# --- jobs ---------------------------------------------------------------------------------------------------------


def _jobs(snapshot: Snapshot, charts: Charts, owners: _Owners, shown: _Shown) -> str:
    header = (
        '<tr><th data-sort="text">job</th><th data-sort="text">owners</th><th data-sort="text">last status</th>'
        '<th data-sort="num">failure streak</th><th data-sort="num">runs</th><th data-sort="num">failures</th>'
        f"<th>p50 duration per day (last {SPARKLINE_DAYS} days)</th>"
        f"<th>last {STRIP_RUNS} runs (oldest left)</th></tr>"
    )
    # A pipeline's tasks (a DAG's, a dbt invocation's hundreds of statements) are its page's grid rows, not lines
    # here: the list is the jobs that run on their own.
    alone = sum(1 for job in snapshot.jobs if job.parent is None)
    lines = [_job_line(job, charts, owners.of_job(job.name), shown) for job in shown.jobs]
    tasks = len(snapshot.jobs) - alone
    grouped = (
        f' {tasks} jobs that run as tasks of a pipeline are in their <a href="#pipelines">pipelines\' grids</a>.'
        if tasks
        else ""
    )
    capped = _capped_note("jobs", len(shown.jobs), alone, len(shown.job_pages), len(snapshot.jobs))
    return (
        f'<section id="jobs"><h2>Jobs <small>{alone}</small></h2>'
        '<p><input id="job-filter" type="search" placeholder="filter by name" aria-label="filter jobs by name"></p>'
        f'<table class="sortable owned" id="jobs-table"><thead>{header}</thead><tbody>{"".join(lines)}</tbody></table>'
        f'<p class="note">Runs and failures: finished runs that started in the {snapshot.days} days. Click a '
        "column to sort. Each job's page shows its most recent "
        f"{data.RECENT_RUNS} runs one by one; older runs are in the daily figures only.{grouped}{capped}</p></section>"
    )


def _job_line(job: Job, charts: Charts, owners: Sequence[str], shown: _Shown) -> str:
    name = escape(job.name)
    return (
        f'<tr data-name="{name.lower()}"{_owned(owners)}>'
        f'<td data-value="{name}">{shown.job(job.name)}</td>'
        f"<td>{escape(', '.join(owners))}</td>"
        f'<td data-value="{escape(job.last_status)}">{_status(job.last_status)}</td>'
        f'<td data-value="{job.current_streak}" class="num{" bad" if job.current_streak else ""}">'
        f"{job.current_streak}</td>"
        f'<td data-value="{job.runs}" class="num">{job.runs:,}</td>'
        f'<td data-value="{job.failures}" class="num">{job.failures:,}</td>'
        f'<td class="spark">{charts.sparklines.get(job.name, "")}</td>'
        f"<td>{_strip(job.recent[:STRIP_RUNS])}</td></tr>"
    )


def _strip(recent: Sequence[Row]) -> str:
    """The recent runs as a row of coloured cells, oldest left (each says its run on hover)."""
    cells = []
    for run in reversed(recent):
        minutes = f" {run['duration_ms'] / 60000:.1f}m" if run["duration_ms"] is not None else ""
        start = run["start_time"].astimezone(datetime.timezone.utc).strftime("%m-%d %H:%M") if run["start_time"] else ""
        status = str(run["status"])
        cells.append(f'<i class="{_STRIP_CLASS.get(status, "")}" title="{escape(f"{start} {status}{minutes}")}"></i>')
    return f'<span class="strip">{"".join(cells)}</span>'


_STRIP_CLASS = {"SUCCESS": "S", "FAILED": "F", "STARTED": "R"}
"""One letter: a strip is many cells, and a page many strips."""


def _status(status: str | None) -> str:
    if not status:
        return "–"
    text = escape(status)
    return f'<span class="status s-{text}">{text}</span>'


_FIRST = {
    "jobs": "those needing attention first (failing, hung, anomalies), then the busiest",
    "datasets": "stale ones first",
    "pipelines": "those whose last run failed first",
}
"""Which of each kind the caps keep."""


def _capped_note(kind: str, rows: int, of_rows: int, pages: int, of_pages: int) -> str:
    """What the caps left out of a list and its pages (nothing when all are in)."""
    listed = f" {rows} of the {of_rows} {kind} are listed, {_FIRST[kind]}." if rows < of_rows else ""
    paged = (
        f" Pages are written for {pages} of the {of_pages} {kind}, {_FIRST[kind]}: the others' names are not links."
        if pages < of_pages
        else ""
    )
    return listed + (" The file is kept under 5 MB." if listed or paged else "") + paged


# --- failures and datasets ---------------------------------------------------------------------------------------


def _failures(snapshot: Snapshot, charts: Charts) -> str:
    if not charts.failures:
        return f'<section id="failures"><h2>Failures</h2><p>No failed run in the {snapshot.days} days.</p></section>'
    failing = len({row["job_name"] for row in snapshot.failures_by_day})
    shown = (
        f" The {charts.failures_jobs} jobs with the most failures of the {failing} that failed are shown."
        if charts.failures_jobs < failing
        else ""
    )
    return (
        f'<section id="failures"><h2>Failures by job and {_unit(snapshot)}</h2>'
        f'<figure class="chart">{charts.failures}<figcaption>Failed runs per job and {_unit(snapshot)} '
        f"(the UTC day they started).{shown}"
        "</figcaption></figure></section>"
    )


def _datasets(snapshot: Snapshot, charts: Charts, owners: _Owners, shown: _Shown) -> str:
    header = (
        '<tr><th data-sort="text">dataset</th><th data-sort="text">owners</th><th data-sort="text">stale</th>'
        '<th data-sort="text">last status</th>'
        '<th data-sort="num">minutes since its data</th><th data-sort="num">SLA minutes</th>'
        '<th data-sort="text">data as of</th><th data-sort="text">last job</th></tr>'
    )
    lines = []
    for dataset in shown.datasets:
        row = dataset.status
        stale = "stale" if row["is_stale"] else "fresh"
        owned = owners.of_dataset(dataset.name)
        lines.append(
            f'<tr class="{stale}"{_owned(owned)}><td data-value="{escape(dataset.name)}">'
            f"{shown.dataset(dataset.name)}</td><td>{escape(', '.join(owned))}</td>"
            f'<td data-value="{stale}">{stale}</td><td>{_status(row["last_status"])}</td>'
            f'<td class="num" data-value="{_raw(row["freshness_minutes"])}">{_count(row["freshness_minutes"])}</td>'
            f'<td class="num" data-value="{_raw(row["freshness_sla_minutes"])}">'
            f"{_count(row['freshness_sla_minutes'])}</td>"
            f"<td>{_when(row['data_as_of'])}</td><td>{escape(str(row['last_job_name'] or ''))}</td></tr>"
        )
    chart = ""
    if charts.freshness:
        capped = len(snapshot.datasets) > charts.freshness_datasets
        note = f" The {charts.freshness_datasets} stalest of {len(snapshot.datasets)} datasets." if capped else ""
        chart = (
            f'<figure class="chart">{charts.freshness}<figcaption>Hours since each dataset\'s newest data '
            f"(log scale); the black tick is its freshness SLA.{note}</figcaption></figure>"
        )
    stale_count = sum(1 for d in snapshot.datasets if d.status["is_stale"])
    total = len(snapshot.datasets)
    left_out = _capped_note("datasets", len(shown.datasets), total, len(shown.dataset_pages), total)
    return (
        f'<section id="datasets"><h2>Datasets <small>{len(snapshot.datasets)}, {stale_count} stale</small></h2>{chart}'
        f'<table class="sortable owned" id="datasets-table"><thead>{header}</thead><tbody>{"".join(lines)}</tbody>'
        f"</table>{_note(left_out)}</section>"
    )


# --- a job's page and a dataset's page ---------------------------------------------------------------------------


def _job_page(job: Job, snapshot: Snapshot, charts: Charts, options: PageOptions) -> str:
    rate = 100.0 * (job.runs - job.failures) / job.runs if job.runs else None
    facts = _facts(
        ("last status", _status(job.last_status)),
        ("last start", _when(job.last_start)),
        ("failure streak", str(job.current_streak)),
        (f"runs ({snapshot.days} days)", f"{job.runs:,}"),
        (f"failures ({snapshot.days} days)", f"{job.failures:,}"),
        ("success rate", _number(rate, percent=True)),
    )
    parts = [
        f'<section class="detail job" id="{anchor("job", job.name)}" data-job="{escape(job.name)}">',
        f'<p class="back"><a href="#jobs">← all jobs</a></p><h2>Job {escape(job.name)}</h2>{facts}',
    ]
    if job.name in charts.jobs:
        parts.append(
            f'<figure class="chart">{charts.jobs[job.name]}<figcaption>The {len(job.recent)} most recent runs '
            f"(at most {data.RECENT_RUNS}); duration percentiles per day over the {snapshot.days} days; "
            "orange bars: volume anomalies (volume_anomalies).</figcaption></figure>"
        )
    else:
        parts.append(
            f'<p class="note">No chart for this job in this file (drawn for {charts.job_chart_cap} jobs: failing, '
            "anomalies, hung runs first).</p>"
        )
    parts.append(f"<h3>Recent failures <small>(at most {data.RECENT_FAILURES})</small></h3>")
    parts.append(_runs_table(job.failed_runs, options, failures=True) if job.failed_runs else "<p>None.</p>")
    if job.anomalies:
        parts.append("<h3>Volume anomalies</h3>")
        parts.append(
            _table(
                ("ended", "run", "records", "baseline mean", "direction"),
                (
                    (
                        _when(a["end_time"]),
                        short_run_id(a["run_id"]),
                        _count(a["records_processed"]),
                        _count(a["baseline_mean"]),
                        escape(a["direction"]),
                    )
                    for a in job.anomalies
                ),
                css="anomalies",
            )
        )
    if job.hung:
        parts.append("<h3>Hung runs</h3>")
        parts.append(
            _table(
                ("run", "attempt", "started", "running"),
                (
                    (short_run_id(h["run_id"]), h["attempt"], _when(h["start_time"]), f"{h['running_minutes']} min")
                    for h in job.hung
                ),
                css="hung",
            )
        )
    if job.backfills:
        parts.append(f"<h3>Backfills <small>(apart from the runs above; at most {data.RECENT_BACKFILLS})</small></h3>")
        parts.append(_runs_table(job.backfills, options, failures=False))
    parts.append("</section>")
    return "\n".join(parts)


def _runs_table(runs: Sequence[Row], options: PageOptions, failures: bool) -> str:
    if failures:
        heads: tuple[str, ...] = ("ended", "error type", "message", "attempt", "run", "trace")
    else:
        heads = ("started", "status", "logical date", "duration", "records", "run", "trace")
    lines: list[tuple[Any, ...]] = []
    for run in runs:
        trace = _trace_link(options.trace_url, run)
        if failures:
            lines.append(
                (
                    _when(run["end_time"]),
                    escape(str(run["error_type"] or "")),
                    f'<span class="message">{_message(run["error_message"])}</span>',
                    run["attempt"],
                    short_run_id(run["run_id"]),
                    trace,
                )
            )
        else:
            lines.append(
                (
                    _when(run["start_time"]),
                    _status(run["status"]),
                    _when(run["logical_date"]),
                    f"{run['duration_ms'] / 60000:.1f} min" if run["duration_ms"] is not None else "",
                    _count(run["records_processed"]),
                    short_run_id(run["run_id"]),
                    trace,
                )
            )
    return _table(heads, lines, css="failures" if failures else "backfills")


def _note(text: str) -> str:
    return f'<p class="note">{text.strip()}</p>' if text else ""


def _message(message: str | None) -> str:
    if not message:
        return ""
    if len(message) <= MESSAGE_CHARS:
        return escape(message)
    return escape(message[:MESSAGE_CHARS]) + "… <small>(cut)</small>"


def _trace_link(template: str | None, run: Row) -> str:
    """The ``--trace-url`` template filled from the run as the alerts fill it (fields percent-encoded); nothing when
    a field is empty or would take the link up its path."""
    if template is None:
        return escape(str(run.get("trace_id") or ""))
    url = fill_link(template, run)
    return f'<a href="{escape(url)}" rel="noreferrer">trace</a>' if url is not None else ""


def _dataset_page(
    dataset: Dataset,
    charts: Charts,
    snapshot: Snapshot,
    lineage: Lineage,
    health: Callable[[Node], str],
    shown: _Shown,
) -> str:
    days = snapshot.days
    row = dataset.status
    facts = _facts(
        ("stale", "yes" if row["is_stale"] else "no"),
        ("last status", _status(row["last_status"])),
        ("last success", _when(row["last_success_at"])),
        ("data as of", _when(row["data_as_of"])),
        ("minutes since its data", _count(row["freshness_minutes"])),
        ("SLA minutes", _count(row["freshness_sla_minutes"])),
        ("record count", _count(row["record_count"])),
    )
    parts = [
        f'<section class="detail dataset" id="{anchor("dataset", dataset.name)}">',
        f'<p class="back"><a href="#datasets">← all datasets</a></p><h2>Dataset {escape(dataset.name)}</h2>{facts}',
    ]
    if dataset.name in charts.datasets:
        parts.append(
            f'<figure class="chart">{charts.datasets[dataset.name]}<figcaption>Its {len(dataset.updates)} most '
            f"recent updates of the last {data.update_days(days)} days (at most {data.RECENT_UPDATES})."
            "</figcaption></figure>"
        )
        if dataset.name in charts.dataset_freshness:
            parts.append(_freshness_history(charts.dataset_freshness[dataset.name]))
    elif dataset.updates:
        parts.append(
            f'<p class="note">No chart for this dataset in this file: charts are drawn for '
            f"{charts.dataset_chart_cap} datasets, stale ones first.</p>"
        )
    parts.append(f"<h3>Jobs that wrote it <small>(in the last {data.update_days(days)} days)</small></h3>")
    parts.append(
        _table(
            ("job", "updates", "last update"),
            (
                (shown.job(w["job_name"]) if w["job_name"] else "", w["updates"], _when(w["last_update_at"]))
                for w in dataset.writers
            ),
            css="writers",
        )
        if dataset.writers
        else f"<p>None in the last {data.update_days(days)} days.</p>"
    )
    parts.append(_lineage(dataset, lineage, health, shown))
    checks = [check for check in snapshot.structure.checks if check["dataset"] == dataset.name]
    parts.append("<h3>Checks <small>(latest result of each)</small></h3>")
    parts.append(
        _table(_CHECK_HEADS, (_check_cells(check, shown, with_dataset=False) for check in checks), css="checks")
        if checks
        else "<p>No check result in sight.</p>"
    )
    parts.append("</section>")
    return "\n".join(parts)


def _freshness_history(chart: str) -> str:
    return (
        f'<figure class="chart freshness-history">{chart}<figcaption>Hours since its newest data over those updates '
        "(freshness_minutes at each instant): rising between updates, dropping at each successful one that brought "
        "newer data; the dashed line is its freshness SLA, the red stretches are stale.</figcaption></figure>"
    )


# --- owners -------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Owners:
    """Who owns what, as the data says: a job its latest run's owners, a dataset those of the jobs that wrote it,
    a pipeline those its tasks name."""

    jobs: dict[str, list[str]]
    datasets: dict[str, list[str]]

    @classmethod
    def of(cls, snapshot: Snapshot) -> _Owners:
        jobs = {job.name: job.owners for job in snapshot.jobs}
        datasets = {
            dataset.name: sorted({owner for w in dataset.writers for owner in jobs.get(w["job_name"], ())})
            for dataset in snapshot.datasets
        }
        return cls(jobs, datasets)

    def of_job(self, name: str) -> list[str]:
        return self.jobs.get(name, [])

    def of_dataset(self, name: str) -> list[str]:
        return self.datasets.get(name, [])


def _owned(owners: Iterable[str]) -> str:
    """A list row's owners for the owner filter: ``data-owners="|a|b|"`` (the script matches ``|owner|``)."""
    return f' data-owners="{escape("|" + "|".join(owners) + "|")}"'


def _owner_filter(snapshot: Snapshot | None) -> str:
    """The owner/team filter of every list (the page's script), with the owners the data names; none without."""
    if snapshot is None:
        return ""
    owners = _Owners.of(snapshot)
    names = {o for found in (*owners.jobs.values(), *owners.datasets.values()) for o in found}
    names.update(o for pipeline in snapshot.structure.pipelines for o in pipeline.owners)
    if not names:
        return ""
    options = "".join(f'<option value="{escape(name)}">{escape(name)}</option>' for name in sorted(names))
    return (
        '<label class="owner">owner <select id="owner-filter" aria-label="show the lists of one owner">'
        f'<option value="">everyone</option>{options}</select></label>'
    )


# --- pipelines and their runs ---------------------------------------------------------------------------------------


def pipeline_anchor(name: str) -> str:
    """The id of a pipeline's page."""
    return anchor("pipeline", name)


def run_anchor(pipeline: str, run_id: str | None) -> str:
    """The id of a pipeline run's page."""
    return anchor("run", f"{pipeline}\x00{run_id}")


def _paged_runs(pipeline: Pipeline) -> list[Row]:
    """The runs of ``pipeline``'s grid with a page of their own: failed ones first, then the newest."""
    ranked = sorted(pipeline.runs, key=lambda run: (run["failed"] == 0, run["recency"]))
    return ranked[:RUN_PAGES]


def _pipelines(snapshot: Snapshot, owners: _Owners, shown: _Shown) -> str:
    pipelines = snapshot.structure.pipelines
    if not pipelines:
        return (
            '<section id="pipelines"><h2>Pipelines</h2><p>No run names a parent run (a DAG, a flow, a dbt '
            "invocation): every job runs on its own.</p></section>"
        )
    header = (
        '<tr><th data-sort="text">pipeline</th><th data-sort="text">owners</th><th data-sort="text">last run</th>'
        '<th data-sort="text">state</th><th data-sort="num">tasks</th><th data-sort="num">failed tasks</th>'
        f"<th>last {data.GRID_RUNS} runs (oldest left)</th></tr>"
    )
    total = len(pipelines)
    lines = []
    for pipeline in shown.pipelines:
        last = pipeline.runs[0]
        state = data.run_state(pipeline.children_of(last["parent_run_id"]))
        strip = "".join(
            f'<i class="{_STRIP_CLASS.get(data.run_state(pipeline.children_of(run["parent_run_id"])), "")}" '
            f'title="{escape(_when(run["first_start_time"]))} {escape(str(run["parent_run_id"]))}"></i>'
            for run in reversed(pipeline.runs)
        )
        lines.append(
            f'<tr{_owned(pipeline.owners)}><td data-value="{escape(pipeline.name)}">'
            f"{shown.link('pipeline', pipeline.name)}</td>"
            f"<td>{escape(', '.join(pipeline.owners))}</td><td>{_when(last['first_start_time'])}</td>"
            f'<td data-value="{state}">{_status(state)}</td><td class="num">{len(pipeline.tasks)}</td>'
            f'<td class="num{" bad" if last["failed"] else ""}">{last["failed"]}</td>'
            f'<td><span class="strip">{strip}</span></td></tr>'
        )
    return (
        f'<section id="pipelines"><h2>Pipelines <small>{len(pipelines)}</small></h2>'
        f'<table class="sortable owned" id="pipelines-table"><thead>{header}</thead><tbody>{"".join(lines)}'
        '</tbody></table><p class="note">A pipeline is a parent job (a DAG, a flow, a dbt invocation) as its tasks\' '
        "runs name it (pipeline_runs). State: running while a task runs, failed when a task's latest attempt "
        f"failed.{_capped_note('pipelines', len(shown.pipelines), total, len(shown.pipeline_pages), total)}"
        "</p></section>"
    )


_LEGEND = (
    '<p class="legend"><i class="S"></i> success <i class="F"></i> failed <i class="R"></i> running '
    '<i class="N"></i> no run</p>'
)


def _pipeline_page(pipeline: Pipeline, shown: _Shown) -> str:
    """The grid: a row per task, a column per run (oldest left, as Airflow's), each cell the task's latest attempt
    in that run."""
    runs = list(reversed(pipeline.runs))
    paged = {run["parent_run_id"] for run in _paged_runs(pipeline)}
    cells: dict[tuple[str, str | None], Row] = {}
    for child in pipeline.children:
        key = (child["job_name"], child["parent_run_id"])
        if key not in cells or child["attempt"] > cells[key]["attempt"]:
            cells[key] = child
    head = []
    for run in runs:
        state = data.run_state(pipeline.children_of(run["parent_run_id"]))
        label = f'<span class="when">{_when(run["first_start_time"])}</span>'
        title = f"run {run['parent_run_id']}: {state}"
        if run["parent_run_id"] in paged:
            label = f'<a href="#{run_anchor(pipeline.name, run["parent_run_id"])}">{label}</a>'
        head.append(
            f'<th class="run" title="{escape(title)}">{label}<i class="{_STRIP_CLASS.get(state, "")}"></i></th>'
        )
    rows = []
    tasks = _grid_tasks(pipeline.tasks, pipeline.children)
    for task in tasks:
        line = []
        for run in runs:
            cell = cells.get((task, run["parent_run_id"]))
            if cell is None:
                line.append('<td><i class="N"></i></td>')
                continue
            # The row and the column say the task and the run: a grid of a dbt project is thousands of cells.
            status = str(cell["status"])
            minutes = f" {cell['duration_ms'] / 60000:.1f}m" if cell["duration_ms"] is not None else ""
            tried = f" try {cell['attempt']}" if cell["attempt"] > 1 else ""
            line.append(
                f'<td><i class="{_STRIP_CLASS.get(status, "")}" title="{escape(f"{status}{tried}{minutes}")}"></i></td>'
            )
        rows.append(f'<tr data-task="{escape(task)}"><th>{shown.job(task)}</th>{"".join(line)}</tr>')
    return (
        f'<section class="detail pipeline" id="{pipeline_anchor(pipeline.name)}" data-pipeline="'
        f'{escape(pipeline.name)}"><p class="back"><a href="#pipelines">← all pipelines</a></p>'
        f"<h2>Pipeline {escape(pipeline.name)}</h2>"
        + _facts(
            ("owners", escape(", ".join(pipeline.owners)) or "–"),
            ("tasks", _of(len(tasks), len(pipeline.tasks), _TASKS_SHOWN)),
            ("runs shown", f"{len(runs)} (the newest, at most {data.GRID_RUNS})"),
        )
        + f'<div class="grid-wrap"><table class="grid"><thead><tr><th></th>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{_LEGEND}"
        f'<p class="note">A column per run, oldest left; a cell per task, its latest attempt in that run (hover '
        f"for its state and duration). The {RUN_PAGES} runs with a page of their own (failed first, then the "
        "newest) link from their dates.</p></section>"
    )


def _run_page(pipeline: Pipeline, run: Row, snapshot: Snapshot, options: PageOptions, shown: _Shown) -> str:
    every = pipeline.children_of(run["parent_run_id"])
    names = list(dict.fromkeys(child["job_name"] for child in every))
    kept = set(_grid_tasks(names, every))
    children = [child for child in every if child["job_name"] in kept]
    state = data.run_state(every)
    first = next((child for child in children if child["trace_id"]), None)
    values = {
        "run_id": run["parent_run_id"],
        "job_name": pipeline.name,
        "trace_id": first["trace_id"] if first else None,
    }
    links = []
    for label, template in (("orchestrator", options.run_url), ("trace", options.trace_url)):
        url = fill_link(template, values) if template else None
        if url is not None:
            links.append(f'<a href="{escape(url)}" rel="noreferrer">{label}</a>')
    ended = run["last_end_time"] if state != "STARTED" else None
    facts = _facts(
        ("pipeline", f'<a href="#{pipeline_anchor(pipeline.name)}">{escape(pipeline.name)}</a>'),
        ("run", short_run_id(run["parent_run_id"])),
        ("state", _status(state)),
        ("started", _when(run["first_start_time"])),
        ("ended", _when(ended) or "–"),
        ("task runs", f"{run['child_runs']} ({run['succeeded']} ok, {run['failed']} failed, {run['running']} running)"),
        ("links", " ".join(links) or "–"),
    )
    gantt = gantt_svg(children, snapshot.now, lambda name: shown.node_href(("job", name)))
    errors = [child for child in children if child["status"] == "FAILED"]
    lines = []
    for child in children:
        trace = _trace_link(options.trace_url, child)
        lines.append(
            (
                shown.job(child["job_name"]),
                _status(child["status"]),
                child["attempt"],
                _when(child["start_time"]),
                f"{child['duration_ms'] / 60000:.1f} min" if child["duration_ms"] is not None else "",
                ", ".join(shown.dataset(name) for name in child["inputs"] or ()),
                ", ".join(shown.dataset(name) for name in child["written"] or ()),
                trace,
            )
        )
    parts = [
        f'<section class="detail run" id="{run_anchor(pipeline.name, run["parent_run_id"])}">',
        f'<p class="back"><a href="#{pipeline_anchor(pipeline.name)}">← pipeline {escape(pipeline.name)}</a></p>',
        f"<h2>Run of {escape(pipeline.name)} {short_run_id(run['parent_run_id'])}</h2>{facts}",
        f'<figure class="chart">{gantt}<figcaption>Its task runs from start to end (UTC), coloured by state; a '
        "dashed bar is still running.</figcaption></figure>"
        if gantt
        else "",
    ]
    if errors:
        parts.append("<h3>Errors</h3>")
        parts.append(
            _table(
                ("task", "attempt", "error type", "message"),
                (
                    (
                        shown.job(e["job_name"]),
                        e["attempt"],
                        escape(str(e["error_type"] or "")),
                        f'<span class="message">{_message(e["error_message"])}</span>',
                    )
                    for e in errors
                ),
                css="errors",
            )
        )
    capped = f" <small>({_of(len(kept), len(names), _TASKS_SHOWN)})</small>" if len(kept) < len(names) else ""
    parts.append(f"<h3>Task runs{capped}</h3>")
    parts.append(
        _table(("task", "state", "attempt", "started", "duration", "read", "wrote", "trace"), lines, css="tasks")
    )
    parts.append("</section>")
    return "\n".join(parts)


# --- lineage and checks ---------------------------------------------------------------------------------------------


def _health(snapshot: Snapshot) -> Callable[[Node], str]:
    """A lineage node's health: a dataset stale or fresh (``dataset_status_latest``; unknown when never updated
    where the views see it), a job failing (a current failure streak), running or ok."""
    stale = {dataset.name: bool(dataset.status["is_stale"]) for dataset in snapshot.datasets}
    jobs = {job.name: job for job in snapshot.jobs}

    def health(node: Node) -> str:
        kind, name = node
        if kind == "dataset":
            return "unknown" if name not in stale else "stale" if stale[name] else "fresh"
        job = jobs.get(name)
        if job is None:
            return "unknown"
        return "failing" if job.current_streak else "running" if job.last_status == "STARTED" else "ok"

    return health


_LINEAGE_LEGEND = (
    '<p class="legend"><i class="fresh"></i> fresh dataset <i class="stale"></i> stale dataset '
    '<i class="unknown"></i> not updated in sight <i class="ok"></i> job ok <i class="failing"></i> job failing</p>'
)


def _lineage(dataset: Dataset, lineage: Lineage, health: Callable[[Node], str], shown: _Shown) -> str:
    if dataset.name not in lineage.writers and dataset.name not in lineage.readers:
        return "<h3>Lineage</h3><p>No run in the views' window read or wrote it naming its inputs.</p>"
    svg = lineage_svg(lineage, dataset.name, health, shown.node_href)
    return (
        f'<h3>Lineage</h3><figure class="chart">{svg}<figcaption>Upstream left, downstream right: datasets '
        "(square) and the jobs (round) that read and write them, up to two jobs away "
        f"(dataset_lineage).</figcaption></figure>{_LINEAGE_LEGEND}"
    )


def _checks(checks: Sequence[Row], owners: _Owners, shown: _Shown) -> str:
    if not checks:
        return '<section id="checks"><h2>Checks</h2><p>No data-quality check result in sight.</p></section>'
    failing = sum(1 for check in checks if check["status"] == "FAILED")
    lines = "".join(
        f'<tr class="{"failing" if check["status"] == "FAILED" else "passing"}"'
        f"{_owned(owners.of_dataset(check['dataset']))}>"
        + "".join(f"<td>{cell}</td>" for cell in _check_cells(check, shown, with_dataset=True))
        + "</tr>"
        for check in checks[:LIST_ROWS]
    )
    capped = f" The first {LIST_ROWS} of {len(checks)} are listed." if len(checks) > LIST_ROWS else ""
    return (
        f'<section id="checks"><h2>Checks <small>{len(checks)}, {failing} failing</small></h2>'
        f'<table class="owned" id="checks-table"><thead><tr>{_CHECK_HEADS_WITH_DATASET}</tr></thead>'
        f'<tbody>{lines}</tbody></table><p class="note">Each check\'s latest result (dataset_checks_latest), failing '
        f"first.{capped}</p></section>"
    )


_CHECK_HEADS = ("check", "status", "column", "actual", "expected", "severity", "checked", "job")
_CHECK_HEADS_WITH_DATASET = "".join(f"<th>{h}</th>" for h in ("dataset", *_CHECK_HEADS))


def _check_cells(check: Row, shown: _Shown, with_dataset: bool) -> list[str]:
    cells = [shown.dataset(check["dataset"])] if with_dataset else []
    return cells + [
        escape(str(check["check_name"])),
        _status(check["status"]),
        escape(str(check["column_name"] or "")),
        escape(str(check["actual"] if check["actual"] is not None else "")),
        escape(str(check["expected"] if check["expected"] is not None else "")),
        escape(str(check["severity"] or "")),
        _when(check["checked_at"]),
        shown.job(check["job_name"]) if check["job_name"] else "",
    ]


_TIMESTAMPED = re.compile(r"(?:[a-z_]+__)?(\d{4}-\d\d-\d\dT\d\d:\d\d)")
"""A run id that is its logical time, as Airflow's ``scheduled__2026-05-04T00:00:00+00:00``: shown as that time."""


def short_run_id(run_id: Any) -> str:
    """A run id as shown: a long one by its first 8 characters (or its time, for an id that is one), the whole
    id on hover."""
    if run_id is None:
        return ""
    text = str(run_id)
    if len(text) <= SHORT_ID:
        return f'<span class="rid">{escape(text)}</span>'
    timestamped = _TIMESTAMPED.match(text)
    short = timestamped.group(1) if timestamped else text[:8]
    return f'<span class="rid" title="{escape(text)}">{escape(short)}…</span>'


# --- small pieces ------------------------------------------------------------------------------------------------


def _grid_tasks(tasks: Sequence[str], children: Sequence[Row]) -> list[str]:
    """``tasks`` in their order, at most :data:`GRID_TASKS`: those with a run that did not succeed first."""
    troubled = {child["job_name"] for child in children if child["status"] != "SUCCESS"}
    return _first(tasks, sorted(tasks, key=lambda task: task not in troubled), GRID_TASKS)


_TASKS_SHOWN = f"shown (at most {GRID_TASKS}): those that failed or run first"


def _of(shown: int, total: int, what: str) -> str:
    return str(total) if shown == total else f"{shown} of {total} {what}"


def _facts(*pairs: tuple[str, str]) -> str:
    items = "".join(f"<div><dt>{escape(name)}</dt><dd>{value}</dd></div>" for name, value in pairs)
    return f'<dl class="facts">{items}</dl>'


def _table(heads: Sequence[str], lines: Iterable[Sequence[Any]], css: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in line) + "</tr>" for line in lines)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return escape(value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"))
    return escape(str(value))


def _count(value: Any) -> str:
    return "" if value is None else f"{value:,.0f}"


def _raw(value: Any) -> str:
    return "" if value is None else f"{value:g}"


_SECTIONS = ("overview", "jobs", "pipelines", "failures", "datasets", "checks")

_STATUS_CSS = "".join(
    f".s-{status},i.{_STRIP_CLASS[status]}{{background:{color}}}" for status, color in STATUS_COLORS.items()
) + "".join(
    f".legend i.{health}{{background:{fill};border:1.5px solid {stroke}}}"
    for health, (fill, stroke, _) in HEALTH_STYLES.items()
)

_STYLE = (
    """
:root{--fg:#1d2329;--muted:#5f6b76;--line:#e3e7eb;--bg:#f6f8fa;--bad:#c62828;--good:#2e7d32}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#1d2329;color:#fff;padding:12px 24px}
header h1{margin:0;font-size:18px}
header .meta{margin:2px 0 6px;color:#c7d0d9;font-size:12px}
header nav a{color:#fff;margin-right:16px;text-decoration:none;font-weight:600}
main{padding:8px 24px 40px;max-width:1200px}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:12px 16px;margin:16px 0}
h2{font-size:16px;margin:4px 0 10px}h3{font-size:14px;margin:16px 0 6px}small{color:var(--muted);font-weight:normal}
.tiles{display:flex;flex-wrap:wrap;gap:12px}
.tile{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:150px}
.tile .value{font-size:26px;font-weight:700}.tile .name{color:var(--muted)}
.change{font-size:12px}.change.better{color:var(--good)}.change.worse{color:var(--bad)}.change.same{color:var(--muted)}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:middle}
th[data-sort]{cursor:pointer;user-select:none}th[data-sort]:after{content:" ⇅";color:#aab4be}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.bad{color:var(--bad);font-weight:700}
tr.stale td:first-child a{color:var(--bad);font-weight:700}
.strip{display:inline-flex;gap:1px}.strip i{display:inline-block;width:5px;height:14px;border-radius:1px}
.status{color:#fff;border-radius:3px;padding:0 5px;font-size:12px}
.spark svg{display:block}.strip i{background:#9e9e9e}
figure.chart{margin:8px 0;overflow-x:auto}figure.chart svg{max-width:none}
figcaption,.note{color:var(--muted);font-size:12px}
.message{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
dl.facts{display:flex;flex-wrap:wrap;gap:6px 24px;margin:0 0 8px}dl.facts dt{color:var(--muted);font-size:12px}
dl.facts dd{margin:0;font-weight:600}
.empty{font-size:15px}
input[type=search]{padding:4px 8px;width:260px;border:1px solid #c5ccd3;border-radius:4px}
.detail{display:none}.detail:target{display:block}
header nav .owner{color:#c7d0d9;font-size:12px;margin-left:8px}header nav select{margin-left:4px}
.rid{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.grid-wrap{overflow-x:auto}table.grid{width:auto;border-collapse:separate;border-spacing:2px}
table.grid th,table.grid td{border:0;padding:0 1px;text-align:left}
table.grid tbody th{padding-right:10px;font-weight:normal}
table.grid th.run{vertical-align:bottom;text-align:center;font-weight:normal;font-size:11px}
table.grid th.run .when{writing-mode:vertical-rl;transform:rotate(180deg);display:inline-block;color:var(--muted)}
table.grid th.run i{display:block;height:6px;margin:2px 1px 0;border-radius:1px}
table.grid td i,.legend i{display:inline-block;width:16px;height:16px;border-radius:2px;vertical-align:middle}
i.N{background:#fff;border:1px solid #d5dbe1}.legend{font-size:12px;color:var(--muted)}.legend i{margin:0 3px 0 10px}
tr.failing td:nth-child(3) .status{font-weight:700}
svg.lineage a,svg.gantt a{cursor:pointer}
main:has(.detail:target)>section:not(.detail){display:none}
"""
    + _STATUS_CSS
    + f".s-PASSED{{background:{STATUS_COLORS['SUCCESS']}}}"
    + "\n.s-STARTED,.s-FAILED,.s-SUCCESS,.s-PASSED{color:#fff}\n"
    + graphs.STYLE
)

# Sorting and filtering the tables: our own few lines, no library; the page works without them.
# Sorting and filtering the tables: our own few lines, no library; the page works without them. The owner filter
# hides every list's rows of other owners (rows with data-owners="|a|b|"), the name filter the jobs not matching;
# the owner chosen is kept for the tab (sessionStorage), so serve's reloads keep it.
_SCRIPT = """
(function(){
  var filter=document.getElementById('job-filter'),owner=document.getElementById('owner-filter');
  function apply(){
    var q=filter?filter.value.trim().toLowerCase():'',o=owner?owner.value:'';
    document.querySelectorAll('table.owned tbody tr').forEach(function(tr){
      var mine=o===''||(tr.getAttribute('data-owners')||'').indexOf('|'+o+'|')>=0;
      var named=q===''||tr.closest('#jobs-table')===null||tr.getAttribute('data-name').indexOf(q)>=0;
      tr.hidden=!(mine&&named);});}
  if(filter){filter.addEventListener('input',apply);}
  if(owner){
    try{var kept=sessionStorage.getItem('owner-filter');}catch(e){kept=null;}
    if(kept&&owner.querySelector('option[value="'+CSS.escape(kept)+'"]')){owner.value=kept;apply();}
    owner.addEventListener('change',function(){
      try{sessionStorage.setItem('owner-filter',owner.value);}catch(e){}
      apply();});}
  document.querySelectorAll('table.sortable th[data-sort]').forEach(function(th){
    th.addEventListener('click',function(){
      var table=th.closest('table'),body=table.tBodies[0],index=Array.prototype.indexOf.call(th.parentNode.children,th);
      var numeric=th.getAttribute('data-sort')==='num',down=th.getAttribute('data-dir')!=='down';
      table.querySelectorAll('th').forEach(function(h){h.removeAttribute('data-dir');});
      th.setAttribute('data-dir',down?'down':'up');
      var rows=Array.prototype.slice.call(body.rows);
      function key(tr){var td=tr.cells[index],v=td.getAttribute('data-value');if(v===null){v=td.textContent;}
        return numeric?(v===''?-Infinity:parseFloat(v)):v.toLowerCase();}
      rows.sort(function(a,b){var x=key(a),y=key(b);var c=x<y?-1:x>y?1:0;return down?-c:c;});
      rows.forEach(function(tr){body.appendChild(tr);});});});
})();
"""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()}'; img-src data:"
)
"""Nothing but the page itself: a browser refuses any request to elsewhere, were one ever written in, and runs no
script but ours, named by its hash (the page must stay one file that opens offline, so the script stays inline):
markup that escaped escaping could not run a script of its own."""

_PAGE = string.Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="$policy">
$refresh
<title>$title</title>
<style>$style</style>
</head>
<body>
<header>
<h1>Data jobs</h1>
<p class="meta">$location · $period · generated $generated UTC</p>
<nav>$nav$owners</nav>
</header>
<main>
$body
</main>
<script>$script</script>
</body>
</html>
"""
)
