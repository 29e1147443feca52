"""The report's charts: Vega-Lite specs, rendered to SVG when the page is built (vl-convert, no browser, no
network), so the page needs no script and no library to show them.

Each function takes plain rows (:mod:`otel_datasink.report.data`) and returns a spec; :func:`svg` renders one.
Accessibility labels are left out of the SVG (``aria: false``): they double the size of a chart of many marks,
and every chart of the page has its numbers in a table or a caption next to it.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from otel_datasink.report.data import FreshnessHistory, Row

Spec = dict[str, Any]

STATUS_COLORS = {"SUCCESS": "#2e7d32", "FAILED": "#c62828", "STARTED": "#1565c0"}
"""A run's status as a colour, the same in every chart and in the page's status strips."""
STALE_COLOR = "#e57373"
"""Stale: a stale dataset's bar in the freshness chart, a stale stretch in a dataset's freshness over time."""

_STATUS_SCALE = {"domain": list(STATUS_COLORS), "range": list(STATUS_COLORS.values())}
_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
"""Only a name: vl-convert bundles Vega-Lite and never fetches it."""
_CONFIG = {
    "aria": False,
    # Short (it is repeated on every text), and the font vl-convert measures the labels with is the one shown.
    "font": "sans-serif",
    "view": {"stroke": None},
    "axis": {"labelFontSize": 10, "titleFontSize": 11, "titleFontWeight": "normal", "gridColor": "#eee"},
    "legend": {"labelFontSize": 10, "titleFontSize": 11, "orient": "top"},
}
_UTC = {"type": "utc"}
_INSTANTS = {"format": "%b %d %H:%M", "labelOverlap": True}
"""An axis of instants: Vega's own labels go down to milliseconds (".134") over a short or one-point range. (A
utc scale formats in UTC; ``formatType: utc`` would drop the format.)"""
_DAYS = {"format": "%b %d", "labelOverlap": True}
_FINISHED = {"domain": ["SUCCESS", "FAILED"], "range": [STATUS_COLORS["SUCCESS"], STATUS_COLORS["FAILED"]]}


def svg(spec: Spec) -> str:
    """The SVG of a Vega-Lite spec (the ``<svg>`` element, to be placed in the page as it is), made smaller for a
    page of hundreds of charts: coordinates to a tenth of a pixel, without Vega's class and role attributes (no
    style or script of the page uses them) and without the axis labels Vega hid for overlapping."""
    import vl_convert

    text: str = vl_convert.vega_to_svg(_vega(spec))
    text = _HIDDEN.sub("", text)
    return _TAG.sub(_smaller_tag, text)


def _vega(spec: Spec) -> Spec:
    """The Vega spec of a Vega-Lite spec. Compiling does not read the data, so a spec whose data is one list of
    values is compiled once per shape and its values put in the compiled spec: the jobs list's hundreds of
    sparklines are compiled once."""
    import vl_convert

    values = spec.get("data", {}).get("values")
    if values is None:
        compiled: Spec = vl_convert.vegalite_to_vega(spec)
        return compiled
    shape = json.dumps({**spec, "data": {"values": []}}, sort_keys=True)
    vega = json.loads(_compiled(shape))
    sources = [d for d in vega.get("data", ()) if d.get("name") == "source_0" and "values" in d]
    if len(sources) != 1:  # not the one inline data set expected: compile this one as it is
        compiled = vl_convert.vegalite_to_vega(spec)
        return compiled
    sources[0]["values"] = values
    return vega


@functools.lru_cache(maxsize=64)
def _compiled(shape: str) -> str:
    import vl_convert

    return json.dumps(vl_convert.vegalite_to_vega(json.loads(shape)))


_TAG = re.compile(r"<[^<>]+>")
"""A tag: attributes are rewritten inside tags only, never in the text a chart shows."""
_HIDDEN = re.compile(r'<text[^<>]*\bopacity="0"[^<>]*>[^<]*</text>|<path class="foreground"[^<>]*display="none"/>')
_UNUSED = re.compile(
    r' (?:class|role|aria-roledescription|aria-hidden|xmlns:xlink|version)="[^"]*"'
    r'| opacity="1"| transform="translate\(0,0\)"'
)
"""Attributes nothing reads, and those that say what is so anyway (full opacity, no move): about 100 KB of a page
of 40 charts."""
_GEOMETRY = re.compile(r'\b(d|transform|x|y|x1|x2|y1|y2|width|height)="([^"]*)"')
_DIGITS = re.compile(r"(\.\d)\d+")
"""Vega writes coordinates to 15 digits: a chart of a few hundred marks is a third smaller with one decimal."""
_ONE_DECIMAL = r"\1"


def _smaller_tag(match: re.Match[str]) -> str:
    return _GEOMETRY.sub(_shorter, _UNUSED.sub("", match.group(0)))


def _shorter(match: re.Match[str]) -> str:
    return f'{match.group(1)}="{_DIGITS.sub(_ONE_DECIMAL, match.group(2))}"'


def _spec(data: Iterable[Row], **body: Any) -> Spec:
    return {"$schema": _SCHEMA, "data": {"values": [_plain(row) for row in data]}, "config": _CONFIG, **body}


def _plain(row: Row) -> Row:
    """A row as JSON values: instants as ISO 8601 (UTC), days as dates."""
    return {key: _json(value) for key, value in row.items()}


def _json(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat() + "T00:00:00Z"
    return value


def sparkline(daily: Sequence[Row], width: int = 90, height: int = 18) -> Spec:
    """A job's p50 duration per day (backfills left out), as a line with no axes: its line in the jobs list."""
    points = [row for row in daily if not row["is_backfill"] and row["p50_duration_ms"] is not None]
    points = points[-SPARKLINE_DAYS:]
    return _spec(
        ({"day": row["run_date"], "minutes": row["p50_duration_ms"] / 60000} for row in points),
        mark={"type": "line", "strokeWidth": 1.2, "point": {"size": 6} if len(points) == 1 else False},
        encoding={
            "x": {"field": "day", "type": "temporal", "scale": _UTC, "axis": None},
            "y": {"field": "minutes", "type": "quantitative", "axis": None, "scale": {"zero": False}},
        },
        width=width,
        height=height,
        padding=1,
    )


WEEKLY_AFTER_DAYS = 62
"""A longer period is drawn by week (its first day) in the runs and failures charts: a column per day of a year
would be 5000 pixels wide."""
JOB_TREND_DAYS = 90
"""A job's page shows its duration percentiles of its last days only (its figures count the whole period)."""
SPARKLINE_DAYS = 30
"""A job's line in the jobs list shows its last days only (a year of points per job would weigh megabytes)."""


def bucket_days(start: datetime.date, end: datetime.date) -> int:
    """The days per column of the period charts: 1, or 7 for a period longer than :data:`WEEKLY_AFTER_DAYS`."""
    return 7 if (end - start).days + 1 > WEEKLY_AFTER_DAYS else 1


def _bucket(day: datetime.date, start: datetime.date, size: int) -> str:
    return (start + datetime.timedelta(days=(day - start).days // size * size)).isoformat()


def _day_axis(start: datetime.date, end: datetime.date, size: int, **axis: Any) -> dict[str, Any]:
    """An x encoding of every day (or week, by ``size``) from ``start`` to ``end``, labelled MM-DD."""
    return {
        "field": "day",
        "type": "ordinal",
        "scale": {"domain": _buckets(start, end, size)},
        "title": "week starting" if size > 1 else None,
        "axis": {"labelAngle": -45, "labelExpr": "slice(datum.value, 5)", **axis},
    }


def _buckets(start: datetime.date, end: datetime.date, size: int) -> list[str]:
    return [(start + datetime.timedelta(days=i)).isoformat() for i in range(0, (end - start).days + 1, size)]


def _summed(rows: Iterable[Row], keys: Sequence[str], values: Sequence[str]) -> list[Row]:
    totals: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        total = totals.setdefault(key, {**{k: row[k] for k in keys}, **{v: 0 for v in values}})
        for v in values:
            total[v] += row[v]
    return list(totals.values())


def runs_per_day(daily: Sequence[Row], start: datetime.date, end: datetime.date) -> Spec:
    """Finished runs per day (per week over a long period), every one from ``start`` to ``end``, stacked by
    status: the period at a glance."""
    size = bucket_days(start, end)
    rows = _summed(
        ({"day": _bucket(r["run_date"], start, size), "runs": r["runs"], "failures": r["failures"]} for r in daily),
        ["day"],
        ["runs", "failures"],
    )
    values = []
    for row in rows:
        values.append({"day": row["day"], "status": "SUCCESS", "runs": row["runs"] - row["failures"]})
        values.append({"day": row["day"], "status": "FAILED", "runs": row["failures"]})
    return _spec(
        values,
        mark={"type": "bar"},
        encoding={
            "x": _day_axis(start, end, size, labelOverlap=True),
            "y": {"field": "runs", "type": "quantitative", "title": "finished runs"},
            "color": {"field": "status", "type": "nominal", "scale": _FINISHED, "title": None},
            "order": {"field": "status", "sort": "descending"},
        },
        width={"step": 14},
        height=140,
    )


def failure_heatmap(cells: Sequence[Row], jobs: Sequence[str], start: datetime.date, end: datetime.date) -> Spec:
    """Failures per job (rows, in the order of ``jobs``) and day (per week over a long period; columns, every one
    from ``start`` to ``end``)."""
    size = bucket_days(start, end)
    values = _summed(
        ({"job": r["job_name"], "day": _bucket(r["run_date"], start, size), "failures": r["failures"]} for r in cells),
        ["job", "day"],
        ["failures"],
    )
    return _spec(
        values,
        mark={"type": "rect", "stroke": "white", "strokeWidth": 1},
        encoding={
            "x": _day_axis(start, end, size),
            "y": {"field": "job", "type": "nominal", "sort": list(jobs), "title": None, "axis": {"labelLimit": 220}},
            "color": {
                "field": "failures",
                "type": "quantitative",
                "title": "failures",
                "scale": {"scheme": "reds", "domainMin": 0},
            },
        },
        width={"step": 14},
        height={"step": 16},
    )


def freshness(datasets: Sequence[Row]) -> Spec:
    """Each dataset's age (hours since its data) as a bar, its SLA as a black tick on it; stale bars red."""
    values = [
        {
            "dataset": row["dataset"],
            "hours": (row["freshness_minutes"] or 0) / 60,
            "sla": row["freshness_sla_minutes"] / 60 if row["freshness_sla_minutes"] is not None else None,
            "state": "stale" if row["is_stale"] else "fresh",
        }
        for row in datasets
    ]
    y = {
        "field": "dataset",
        "type": "nominal",
        "sort": [v["dataset"] for v in values],
        "title": None,
        "axis": {"labelLimit": 220},
    }
    return _spec(
        values,
        layer=[
            {
                "mark": {"type": "bar"},
                "encoding": {
                    "y": y,
                    "x": {
                        "field": "hours",
                        "type": "quantitative",
                        "title": "hours since its newest data",
                        "scale": {"type": "symlog"},
                        "axis": {"tickCount": 6, "labelOverlap": "greedy"},
                    },
                    "color": {
                        "field": "state",
                        "type": "nominal",
                        "title": None,
                        "scale": {"domain": ["fresh", "stale"], "range": ["#81c784", STALE_COLOR]},
                    },
                },
            },
            {
                "transform": [{"filter": "datum.sla != null"}],
                "mark": {"type": "tick", "color": "black", "thickness": 2},
                "encoding": {"y": y, "x": {"field": "sla", "type": "quantitative"}},
            },
        ],
        width=420,
        height={"step": 16},
    )


def job_detail(recent: Sequence[Row], daily: Sequence[Row], anomalies: Sequence[Row]) -> Spec | None:
    """A job's page: its recent runs on a timeline (duration, coloured by status, backfills as squares), its p50
    and p95 duration per day, and the records of its recent runs with the volume anomalies marked; None when
    there is nothing to draw (no run with a duration)."""
    flagged = {(row["run_id"], row["attempt"]) for row in anomalies}
    runs = []
    for row in recent:
        runs.append(
            {
                "start": row["start_time"],
                "minutes": row["duration_ms"] / 60000 if row["duration_ms"] is not None else None,
                "status": row["status"],
                "kind": "backfill" if row["run_type"] == "backfill" else "run",
                "records": row["records_processed"],
                "volume": "anomaly" if (row["run_id"], row["attempt"]) in flagged else "usual",
            }
        )
    trend = []
    last = max((row["run_date"] for row in daily), default=None)
    for row in daily:
        if row["is_backfill"] or (last - row["run_date"]).days >= JOB_TREND_DAYS:
            continue
        for name in ("p50", "p95"):
            value = row[f"{name}_duration_ms"]
            if value is not None:
                trend.append({"day": row["run_date"], "percentile": name, "minutes": value / 60000})
    x = {"field": "start", "type": "temporal", "scale": _UTC, "title": None, "axis": _INSTANTS}
    timed = [_plain(r) for r in runs if r["minutes"] is not None]
    panels: list[Spec] = []
    if timed:
        panels.append(
            {
                "title": {"text": "recent runs: duration by start time", "anchor": "start", "fontSize": 12},
                "data": {"values": timed},
                "mark": {"type": "point", "filled": True, "size": 45},
                "encoding": {
                    "x": x,
                    "y": {"field": "minutes", "type": "quantitative", "title": "minutes"},
                    "color": {"field": "status", "type": "nominal", "scale": _STATUS_SCALE, "title": None},
                    "shape": {
                        "field": "kind",
                        "type": "nominal",
                        "title": None,
                        "scale": {"domain": ["run", "backfill"], "range": ["circle", "square"]},
                    },
                },
                "width": 560,
                "height": 110,
            }
        )
    if trend:
        panels.append(
            {
                "title": {
                    "text": "duration per day (successful runs, no backfills)",
                    "anchor": "start",
                    "fontSize": 12,
                },
                "data": {"values": [_plain(t) for t in trend]},
                "mark": {"type": "line", "point": len(trend) <= 2 * 31},  # points only while they stay apart
                "encoding": {
                    "x": {"field": "day", "type": "temporal", "scale": _UTC, "title": None, "axis": _DAYS},
                    "y": {"field": "minutes", "type": "quantitative", "title": "minutes"},
                    "strokeDash": {"field": "percentile", "type": "nominal", "title": None},
                    "color": {"value": "#455a64"},
                },
                "width": 560,
                "height": 90,
            }
        )
    if any(r["records"] is not None for r in runs):
        panels.append(
            {
                "title": {"text": "records processed by recent runs", "anchor": "start", "fontSize": 12},
                "data": {"values": [_plain(r) for r in runs if r["records"] is not None]},
                "mark": {"type": "bar", "width": 4},
                "encoding": {
                    "x": x,
                    "y": {"field": "records", "type": "quantitative", "title": "records"},
                    "color": {
                        "field": "volume",
                        "type": "nominal",
                        "title": None,
                        "scale": {"domain": ["usual", "anomaly"], "range": ["#90a4ae", "#ef6c00"]},
                    },
                },
                "width": 560,
                "height": 80,
            }
        )
    if not panels:
        return None
    return {
        "$schema": _SCHEMA,
        "config": _CONFIG,
        "vconcat": panels,
        "resolve": {"scale": {"color": "independent", "shape": "independent", "strokeDash": "independent"}},
    }


def dataset_updates(updates: Sequence[Row]) -> Spec:
    """A dataset's recent updates over time: records written by each, coloured by status."""
    return _spec(
        (
            {"at": u["updated_at"], "records": u["records_written"] or 0, "status": u["status"], "job": u["job_name"]}
            for u in updates
        ),
        mark={"type": "point", "filled": True, "size": 40},
        encoding={
            "x": {"field": "at", "type": "temporal", "scale": _UTC, "title": None, "axis": _INSTANTS},
            "y": {"field": "records", "type": "quantitative", "title": "records written"},
            "color": {"field": "status", "type": "nominal", "scale": _FINISHED, "title": None},
        },
        width=560,
        height=110,
    )


def dataset_freshness(history: FreshnessHistory) -> Spec:
    """A dataset's age of its newest data over time (hours; a sawtooth rising between updates, dropping at each
    that brought newer data), its SLA as a dashed rule, and the stretches above it shaded red: stale. One data set
    of a few rows (two per update, one for now, one per stale stretch), so the spec is compiled once for all."""
    values: list[Row] = [
        {"kind": "age", "at": p["at"], "hours": p["minutes"] / 60, "n": n} for n, p in enumerate(history.points)
    ]
    values += [{"kind": "stale", "at": s["start"], "until": s["end"]} for s in history.stale]
    if history.sla_minutes is not None:
        values.append({"kind": "sla", "hours": history.sla_minutes / 60})
    # Few ticks: a month of hourly updates is 100 points, most of the chart's bytes are its axes.
    x = {"field": "at", "type": "temporal", "scale": _UTC, "title": None, "axis": {**_INSTANTS, "tickCount": 6}}
    return _spec(
        values,
        layer=[
            {
                "transform": [{"filter": "datum.kind == 'stale'"}],
                "mark": {"type": "rect", "color": STALE_COLOR, "opacity": 0.3},
                "encoding": {"x": x, "x2": {"field": "until"}},
            },
            {
                "transform": [{"filter": "datum.kind == 'sla'"}],
                "mark": {"type": "rule", "color": "black", "strokeDash": [4, 3]},
                "encoding": {"y": {"field": "hours", "type": "quantitative"}},
            },
            {
                "transform": [{"filter": "datum.kind == 'age'"}],
                "mark": {"type": "line", "color": "#455a64", "strokeWidth": 1.5},
                "encoding": {
                    "x": x,
                    "y": {"field": "hours", "type": "quantitative", "title": "data age (hours)"},
                    "order": {"field": "n", "type": "quantitative"},  # a drop is two points of one instant
                },
            },
        ],
        width=560,
        height=110,
    )
