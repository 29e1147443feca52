"""The report tests' scenario, written by the real pipeline, and the page ``otel-datasink report`` builds of it.

The scenario: a stale dataset (``orders``), a job failing three times in a row (``broken``), a hung run
(``slow``), a volume spike (``ingest``), a backfill, healthy neighbours, runs of the previous period, and a job
and an error message full of HTML.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

from job_spans import DAY_NS, HOUR_NS, MINUTE_NS, job_span, now_ns, write_spans

from otel_datasink import cli, semconv

HOSTILE_JOB = "z_<b>x&amp;'\"</b>"
HOSTILE_MESSAGE = "<script>window.pwned=1</script> & more"
TRACE_URL = "https://traces.example/t/{trace_id}?job={job_name}"
"""The page's ``--trace-url``: a failure links to its trace, with the job's name in the link too."""


def seed(location: str, hostile: bool = True) -> datetime.datetime:
    """Writes the scenario; returns the instant it is about (whole milliseconds, as the tables keep them).

    ``hostile=False`` leaves out the job and the message full of HTML: for a picture of the page, not a test of it.
    """
    n = now_ns() // 1_000_000 * 1_000_000
    spans = []

    def run(job: str, end_ns: int, minutes: float = 5, **kwargs: Any) -> None:
        spans.append(job_span(job, end_ns - int(minutes * MINUTE_NS), end_ns, **kwargs))

    # A dataset past its SLA, and a fresh one.
    run("load_orders", n - 3 * HOUR_NS, updates=[dict(name="orders", freshness_sla_minutes=60, records_written=10)])
    run("load_customers", n - 10 * MINUTE_NS, updates=[dict(name="customers", freshness_sla_minutes=60)])
    # Three failures in a row after a success.
    for hours, failed in ((5, False), (4, True), (3, True), (2, True)):
        run("broken", n - hours * HOUR_NS, failed=failed, error="KeyError", run_id=f"broken-{hours}")
    # A hung run, with a usual duration of 10 minutes.
    for day in range(1, 6):
        run("slow", n - day * DAY_NS, minutes=10 + day % 3, run_id=f"slow-{day}")
    spans.append(job_span("slow", n - 3 * HOUR_NS, None, run_id="slow-hung"))
    # A spike after two weeks of about 1000 records a day, and a backfill.
    for day in range(1, 15):
        minutes = 5 + (day * 7 % 5) / 2
        run(
            "ingest", n - day * DAY_NS, minutes, records=1000 + (day % 3) * 10, run_id=f"ingest-{day}", dataset="events"
        )
    run("ingest", n - 2 * HOUR_NS, records=50_000, run_id="ingest-spike", dataset="events")
    run("ingest", n - HOUR_NS, records=700, run_id="ingest-backfill", run_type="backfill", logical_date="2026-01-01")
    # The previous period: more runs, one failure that no longer counts.
    for day in range(31, 41):
        run("steady", n - day * DAY_NS, minutes=2, run_id=f"steady-{day}")
    run("steady", n - 35 * DAY_NS - HOUR_NS, failed=True, run_id="steady-old-failure")
    for day in range(0, 3):
        run("steady", n - day * DAY_NS - 30 * MINUTE_NS, minutes=2 + day, run_id=f"steady-now-{day}")
    # Names and messages that are HTML.
    if hostile:
        run(HOSTILE_JOB, n - 90 * MINUTE_NS, failed=True, error="ValueError", run_id="hostile-1")
    write_spans(location, spans)
    seeded = datetime.datetime.fromtimestamp(n / 1e9, tz=datetime.timezone.utc)
    if not hostile:
        return seeded
    # The exception message is "<job> broke"; one run says more, in HTML.
    from otel_datasink.mapping import STATUS_CODE_ERROR, SpanRecord

    write_spans(
        location,
        [
            SpanRecord(
                name="hostile",
                trace_id=0xABC,
                span_id=0xDEF,
                parent_span_id=None,
                start_time_ns=n - 80 * MINUTE_NS,
                end_time_ns=n - 70 * MINUTE_NS,
                status_code=STATUS_CODE_ERROR,
                status_message=HOSTILE_MESSAGE,
                attributes={"job.name": HOSTILE_JOB, "job.run.id": "hostile-2"},
                events=[],
                resource={"service.name": "tests"},
            )
        ],
    )
    return seeded


def build_report(folder: Path, hostile: bool = True) -> tuple[str, datetime.datetime, Path]:
    """Seeds ``folder/datasink`` (:func:`seed`) and builds its page with ``otel-datasink report --now <its instant>
    --trace-url TRACE_URL`` into ``folder/report.html``; the location, the instant and the page's file."""
    location = str(folder / "datasink")
    now = seed(location, hostile)
    out = folder / "report.html"
    # Run from the folder, so that the page names the location as a user would give it (the README's picture).
    argv = ["report", "--location", "datasink", "--out", str(out), "--now", now.isoformat(), "--trace-url", TRACE_URL]
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert cli.main(argv) == 0
    finally:
        os.chdir(cwd)
    return location, now, out


# --- the platform: a pipeline's runs, owners, lineage and checks -----------------------------------------------

PIPELINE = "nightly"
PIPELINE_TASKS = ("extract", "transform", "publish")
PIPELINE_RUN_IDS = tuple(f"scheduled__2026-05-0{day}T00:00:00+00:00" for day in range(1, 9))
"""Its runs, oldest first, named as Airflow names them (long: shown short, whole on hover)."""
RUN_URL = "https://airflow.example/dags/{job_name}/grid?dag_run_id={run_id}"


def seed_platform(location: str) -> datetime.datetime:
    """Writes a platform of two teams; returns the instant it is about.

    ``nightly`` (team-payments) ran eight times, a day apart: ``extract`` reads ``raw.orders`` and writes
    ``staging.orders``, ``transform`` reads it and ``customers`` and writes ``marts.revenue`` (failed once and was
    retried in the second run, failed in the latest), ``publish`` reads ``marts.revenue`` and writes
    ``reports.daily`` (not run in the latest run); ``marts.revenue`` is therefore stale and its ``not_null_revenue``
    check failing (since two runs). Beside it, ``load_customers`` (team-sales) runs on its own, writing
    ``customers``.
    """
    n = now_ns() // 1_000_000 * 1_000_000
    spans = []
    payments = {semconv.JOB_OWNERS: ["team-payments"], semconv.JOB_PARENT_NAME: PIPELINE}
    writes = {"extract": "staging.orders", "transform": "marts.revenue", "publish": "reports.daily"}
    reads = {"extract": ["raw.orders"], "transform": ["staging.orders", "customers"], "publish": ["marts.revenue"]}
    for index, run_id in enumerate(PIPELINE_RUN_IDS):
        start = n - (len(PIPELINE_RUN_IDS) - index) * DAY_NS + HOUR_NS
        latest = index == len(PIPELINE_RUN_IDS) - 1
        for offset, task in enumerate(PIPELINE_TASKS):
            begin = start + offset * 10 * MINUTE_NS
            tries = [False, True] if index == 1 and task == "transform" else [True]
            if latest and task == "publish":
                continue  # its upstream failed: not run
            for attempt, last in enumerate(tries, start=1):
                failed = (latest and task == "transform") or not last
                update = [] if failed else [dict(name=writes[task], freshness_sla_minutes=1500, records_written=100)]
                checks = []
                if task == "transform" and not failed:
                    passed = index < len(PIPELINE_RUN_IDS) - 2
                    checks = [
                        dict(
                            dataset="marts.revenue",
                            name="not_null_revenue",
                            passed=passed,
                            assertion="not_null",
                            column="revenue",
                            actual=0 if passed else 12,
                            expected=0,
                            severity="error",
                        )
                    ]
                if task == "extract":
                    checks = [dict(dataset="staging.orders", name="row_count", passed=True, actual=100)]
                span = job_span(
                    task,
                    begin,
                    begin + 8 * MINUTE_NS,
                    failed=failed,
                    error="SchemaError",
                    run_id=f"{task}-{index}",
                    updates=update,
                    checks=checks,
                )
                span.attributes.update(payments)
                span.attributes[semconv.JOB_PARENT_RUN_ID] = run_id
                span.attributes[semconv.JOB_INPUTS] = reads[task]
                span.attributes[semconv.JOB_RUN_ATTEMPT] = attempt
                spans.append(span)
    for hours in (30, 6, 1):
        span = job_span(
            "load_customers",
            n - hours * HOUR_NS,
            n - hours * HOUR_NS + 2 * MINUTE_NS,
            run_id=f"customers-{hours}",
            updates=[dict(name="customers", freshness_sla_minutes=120)],
        )
        span.attributes[semconv.JOB_OWNERS] = ["team-sales"]
        spans.append(span)
    write_spans(location, spans)
    return datetime.datetime.fromtimestamp(n / 1e9, tz=datetime.timezone.utc)


def build_platform_report(folder: Path) -> tuple[str, datetime.datetime, Path]:
    """Seeds ``folder/platform`` (:func:`seed_platform`) and builds its page with ``--trace-url`` and
    ``--run-url``; the location, the instant and the page's file."""
    location = str(folder / "platform")
    now = seed_platform(location)
    out = folder / "platform.html"
    argv = ["report", "--location", "platform", "--out", str(out), "--now", now.isoformat()]
    cwd = os.getcwd()
    os.chdir(folder)  # the page names the location as a user would give it (the README's pictures)
    try:
        assert cli.main([*argv, "--trace-url", TRACE_URL, "--run-url", RUN_URL]) == 0
    finally:
        os.chdir(cwd)
    return location, now, out
