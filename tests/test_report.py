"""``otel-datasink report`` and ``serve`` without a browser: the page's numbers are the views' answers, every
string is escaped, caps are kept and said, and bad input fails as every command does."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import html
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from job_spans import HOUR_NS, MINUTE_NS, job_span, now_ns, write_spans
from report_scenario import HOSTILE_JOB, HOSTILE_MESSAGE, PIPELINE, PIPELINE_RUN_IDS, PIPELINE_TASKS, seed
from serve_process import serving

from otel_datasink import cli, local
from otel_datasink.catalog import pin_time
from otel_datasink.config import Options
from otel_datasink.report import builder as build_module
from otel_datasink.report import charts, data, page
from otel_datasink.report.pageserver import authorized

pytest.importorskip("vl_convert", reason="the report extra (vl-convert-python) is not installed")

DAYS = 30


def with_html(report: tuple[str, datetime.datetime, Path]) -> tuple[str, datetime.datetime, str]:
    """The seeded report's location and instant, and its page's HTML."""
    location, now, page_file = report
    return location, now, page_file.read_text(encoding="utf-8")


def views(location: str, now: datetime.datetime, parameters=data.STATE_PARAMETERS):
    """The views as the report reads them: its parameters (the defaults for states, a longer window for the
    period's aggregates), pinned at its instant."""
    con = local.connect(location, parameters=parameters)
    pin_time(con, now, parameters)
    return con


def trend(location: str, now: datetime.datetime):
    return views(location, now, data.trend_parameters(DAYS))


def figure(page_html: str, name: str) -> float | None:
    found = re.search(rf'data-figure="{re.escape(name)}" data-value="([^"]*)"', page_html)
    assert found, f"no figure {name!r}"
    return float(found.group(1)) if found.group(1) else None


def test_the_overview_figures_are_the_views_answers(seeded_report):
    location, now, text = with_html(seeded_report)
    con = views(location, now)
    start = data.period_start(now, DAYS)
    runs, failures = (
        trend(location, now)
        .execute(
            "SELECT sum(runs), sum(failures) FROM runtime_trend WHERE run_date >= ? AND run_date <= ?",
            [start, now.date()],
        )
        .fetchone()
    )
    assert figure(text, "runs") == runs
    assert figure(text, "success rate") == pytest.approx(100.0 * (runs - failures) / runs, abs=1e-6)
    failing = con.execute("SELECT count(*) FROM recurring_failures WHERE current_streak > 0").fetchone()[0]
    assert figure(text, "failing jobs") == failing == 2  # broken, and the job with the HTML name
    assert figure(text, "stale datasets") == con.execute("SELECT count(*) FROM stale_datasets").fetchone()[0] == 1
    assert figure(text, "hung runs") == con.execute("SELECT count(*) FROM hung_runs").fetchone()[0] == 1
    assert 'data-figure="open alerts"' not in text  # no alerts table at this location


def test_the_previous_period_is_the_views_of_the_days_before(seeded_report):
    location, now, text = with_html(seeded_report)
    start = data.period_start(now, DAYS)
    runs, failures = (
        trend(location, now)
        .execute(
            "SELECT sum(runs), sum(failures) FROM runtime_trend WHERE run_date >= ? AND run_date < ?",
            [start - datetime.timedelta(days=DAYS), start],
        )
        .fetchone()
    )
    assert (runs, failures) == (11, 1)  # steady's runs 31 to 40 days ago, one failed
    assert f"{runs:,} in the previous {DAYS} days" in text
    assert f"{100.0 * (runs - failures) / runs:.1f}% in the previous {DAYS} days" in text
    # Thirty days ago nothing was failing, stale or hung: the seeded trouble is all recent.
    assert text.count(f"▲ 1, vs 0 {DAYS} days ago") == 2  # stale datasets, hung runs
    assert f"▲ 2, vs 0 {DAYS} days ago" in text  # failing jobs


def test_each_job_line_shows_the_views_streak_and_runs(seeded_report):
    location, now, text = with_html(seeded_report)
    con = views(location, now)
    streaks = dict(con.execute("SELECT job_name, current_streak FROM recurring_failures").fetchall())
    jobs = [row[0] for row in con.execute("SELECT DISTINCT job_name FROM job_runs_latest ORDER BY 1").fetchall()]
    lines = re.findall(r'<tr data-name="[^"]*"[^>]*><td data-value="([^"]*)">.*?</td>.*?<td data-value="(\d+)"', text)
    assert [html.unescape(name) for name, _ in lines] == jobs
    assert {html.unescape(name): int(streak) for name, streak in lines} == {j: streaks.get(j, 0) for j in jobs}
    assert streaks["broken"] == 3


def test_a_jobs_page_lists_its_failures_with_error_attempt_and_trace_link(seeded_report):
    location, now, text = with_html(seeded_report)
    section = _section(text, "job", "broken")
    assert section.count("broken broke") == 3
    assert section.count("<td>KeyError</td>") == 3
    trace_ids = [
        row[0]
        for row in views(location, now)
        .execute("SELECT trace_id FROM job_runs_latest WHERE job_name = 'broken' AND status = 'FAILED'")
        .fetchall()
    ]
    for trace_id in trace_ids:
        assert f'href="https://traces.example/t/{trace_id}?job=broken"' in section


def test_backfills_are_shown_apart_and_anomalies_marked(seeded_report):
    _, _, text = with_html(seeded_report)
    section = _section(text, "job", "ingest")
    assert "Backfills" in section and "ingest-backfill" in section
    assert "Volume anomalies" in section and "ingest-spike" in section and "spike" in section


def test_every_string_from_the_data_is_escaped(seeded_report):
    _, _, text = with_html(seeded_report)
    assert HOSTILE_JOB not in text and HOSTILE_MESSAGE not in text
    assert html.escape(HOSTILE_JOB) in text
    assert html.escape(HOSTILE_MESSAGE) in _section(text, "job", HOSTILE_JOB)
    # The only script is our own; the charts' text is escaped by vl-convert.
    assert text.count("<script") == 1
    assert "<b>" not in text


def test_the_page_refers_to_nothing_outside_itself(seeded_report):
    _, _, text = with_html(seeded_report)
    links = re.findall(r'(?:src|href)="([^"#][^"]*)"', text)
    assert all(link.startswith("https://traces.example/") for link in links), links
    assert "@import" not in text
    # Only the heat map legend's own gradient, in the page (vl-convert numbers them through the process).
    assert all(re.fullmatch(r"#gradient_\d+", target) for target in re.findall(r"url\(([^)]*)\)", text))
    assert "default-src 'none'" in text


def test_a_job_with_successful_runs_in_the_last_30_days_has_a_sparkline_in_its_line(seeded_report):
    location, now, text = with_html(seeded_report)
    trend = views(location, now)  # runtime_trend over the state views' 30 days
    expected = {
        row[0]
        for row in trend.execute(
            "SELECT job_name FROM runtime_trend WHERE NOT is_backfill AND p50_duration_ms IS NOT NULL"
        ).fetchall()
    }
    lines = re.findall(r'<tr data-name="[^"]*"[^>]*><td data-value="([^"]*)">.*?</tr>', text, re.S)
    spark = re.findall(
        r'<tr data-name="[^"]*"[^>]*><td data-value="([^"]*)">(?:(?!</tr>).)*?class="spark"><svg', text, re.S
    )
    assert expected and {html.unescape(name) for name in spark} == expected
    assert len(lines) > len(spark)  # a job that only failed has none


def test_a_chart_per_job_and_dataset_is_drawn_and_the_page_says_what_is_capped(seeded_report, monkeypatch, tmp_path):
    location, now, text = with_html(seeded_report)
    assert "No chart for this job" not in text
    monkeypatch.setattr(build_module, "JOB_CHARTS", 1)
    capped = build_module.build(Options.resolve(location), days=DAYS, now=now).html
    charted = re.findall(r'class="detail job" id="[^"]*" data-job="([^"]*)">.*?<figure', capped, re.S)
    assert capped.count("No chart for this job in this file (drawn for 1 jobs: failing, anomalies") == 6
    assert "broken" in capped.split("No chart for this job")[0]  # the job failing longest is the one charted
    assert len(charted) >= 1


def test_recent_runs_are_capped_per_job(tmp_path, monkeypatch):
    location = str(tmp_path / "datasink")
    end = int(time.time()) * 1_000_000_000
    write_spans(
        location, [job_span("busy", end - i * 10 * MINUTE_NS - MINUTE_NS, end - i * 10 * MINUTE_NS) for i in range(80)]
    )
    monkeypatch.setattr(data, "RECENT_RUNS", 20)
    now = datetime.datetime.fromtimestamp(end / 1e9, tz=datetime.timezone.utc)
    snapshot_html = build_module.build(Options.resolve(location), days=DAYS, now=now).html
    strip = re.search(r'<span class="strip">(.*?)</span>', snapshot_html).group(1)
    assert strip.count("<i ") == 20 <= page.STRIP_RUNS
    assert "most recent 20 runs one by one" in snapshot_html
    assert 'data-figure="runs" data-value="80"' in snapshot_html  # the figures count every run


def test_an_empty_location_renders_a_page_that_says_so(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "report.html"
    assert cli.main(["report", "--location", str(tmp_path / "empty"), "--out", str(out)]) == 0
    assert "No data yet" in out.read_text()
    assert "holds no job run" in out.read_text()


def test_a_location_that_does_not_exist_is_an_error(tmp_path, capsys):
    out = tmp_path / "report.html"
    assert cli.main(["report", "--location", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("otel-datasink report: ") and "does not exist" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "--out", "x.html", "--trace-url", "https://t/{nope}"], "unknown field {nope}"),
        (["report", "--out", "x.html", "--run-url", "https://a/{dag}"], "--run-url: unknown field {dag}"),
        (["serve", "--run-url", "https://a/{dag}"], "--run-url: unknown field {dag}"),
        (["serve", "--listen", "0.0.0.0:8080"], "is not a loopback address: give --token"),
        (["serve", "--listen", "nowhere"], "not a HOST:PORT"),
        (["serve", "--token", "a", "--token-file", "b"], "not both"),
    ],
)
def test_bad_options_fail_on_one_line(argv, message, tmp_path, capsys):
    assert cli.main([*argv, "--location", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith(f"otel-datasink {argv[0]}: ")


def test_days_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", "--out", "x.html", "--days", "0", "--location", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--days: must be 1 to 400" in capsys.readouterr().err


def test_the_token_is_a_bearer_header_or_a_browser_logins_password_compared_in_full():
    assert authorized(None, None) and authorized("anything", None)
    assert authorized("Bearer s3cret", "s3cret")
    assert authorized("Basic " + base64.b64encode(b"anyone:s3cret").decode(), "s3cret")
    wrong_logins = [base64.b64encode(login).decode() for login in (b"s3cret", b"s3cret:", b"a:s3cre", b"a:s3cret ")]
    for header in (None, "", "Bearer s3cre", "Bearer s3cret ", "bearer s3cret", "s3cret", "Bearer \udcff"):
        assert not authorized(header, "s3cret")
    for header in ["Basic " + login for login in wrong_logins] + ["Basic !!!", "Basic \udcff"]:
        assert not authorized(header, "s3cret")


def test_serve_on_another_address_requires_the_token_and_refuses_writes(seeded_report, tmp_path):
    location, _, _ = seeded_report
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    with serving(location, "--listen", "0.0.0.0:0", "--token-file", str(token_file)) as line:
        assert "bearer token required" in line, line
        url = re.search(r"http://\S+", line).group(0).replace("0.0.0.0", "127.0.0.1")
        assert _status(url) == 401
        assert _status(url, {"Authorization": "Bearer wrong"}) == 401
        assert _status(url, {"Authorization": "Bearer s3cret"}) == 200
        login = base64.b64encode(b"me:s3cret").decode()
        assert _status(url, {"Authorization": f"Basic {login}"}) == 200  # what a browser sends once asked
        assert _status(url + "other", {"Authorization": "Bearer s3cret"}) == 404
        assert _status(url, {"Authorization": "Bearer s3cret"}, method="POST") == 405


def _status(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> int:
    request = urllib.request.Request(url, headers=headers or {}, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _section(text: str, kind: str, name: str) -> str:
    start = text.index(f'id="{page.anchor(kind, name)}"')
    return text[start : text.index("</section>", start)]


def test_listen_addresses():
    from otel_datasink.commands.serve import is_loopback, listen_address

    assert listen_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert listen_address("[::1]:9") == ("::1", 9)
    assert listen_address(":8080") == ("0.0.0.0", 8080)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.com")


def test_open_alerts_are_a_figure_once_the_location_has_an_alerts_table(tmp_path, capsys):
    location = str(tmp_path / "datasink")
    now = seed(location)
    # An evaluation whose target refuses the connection: its incidents are recorded, FIRING, undelivered.
    argv = ["alert", "--location", location, "--now", now.isoformat(), "--notify", "json://127.0.0.1:1/"]
    assert cli.main(argv) == 1  # a failed delivery
    capsys.readouterr()
    out = tmp_path / "report.html"
    assert cli.main(["report", "--location", location, "--out", str(out), "--now", now.isoformat()]) == 0
    text = out.read_text()
    con = views(location, now)
    open_alerts = con.execute("SELECT count(*) FROM alerts_open").fetchone()[0]
    assert open_alerts >= 3  # the stale dataset, the failing job, the hung run (and the spike)
    assert figure(text, "open alerts") == open_alerts
    assert f"{open_alerts}, vs 0 {DAYS} days ago" in text
    assert "<h3>Open alerts" in text and "stale_dataset" in text


def test_an_update_dated_far_ahead_of_its_receipt_is_not_a_datasets_latest_update_on_its_page(tmp_path):
    location = str(tmp_path / "datasink")
    end = now_ns()
    year_2554 = 2**64 - 1
    write_spans(
        location,
        [
            job_span("load", end - 2 * MINUTE_NS, end - MINUTE_NS, dataset="orders"),
            job_span("clock_broken", end - MINUTE_NS, end, updates=[{"name": "orders", "at_ns": year_2554}]),
        ],
    )
    now = datetime.datetime.fromtimestamp(end / 1e9, tz=datetime.timezone.utc)
    con = local.connect(location)
    (orders,) = data.datasets(con, now, DAYS)
    assert [update["job_name"] for update in orders.updates] == ["load"]
    assert [writer["job_name"] for writer in orders.writers] == ["load"]


def _iso(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc).isoformat()


def test_a_datasets_freshness_history_rises_between_updates_drops_at_each_and_marks_its_stale_stretches(tmp_path):
    location = str(tmp_path / "datasink")
    end = now_ns() // MINUTE_NS * MINUTE_NS
    now = datetime.datetime.fromtimestamp(end / 1e9, tz=datetime.timezone.utc)

    def load(hours_ago: float, **update):
        at = end - int(hours_ago * HOUR_NS)
        failed = update.pop("failed", False)
        kind = {key: update.pop(key) for key in ("run_type", "logical_date") if key in update}
        updates = [dict(name="hourly", freshness_sla_minutes=60, **update)]
        return job_span("load_hourly", at - MINUTE_NS, at, failed=failed, updates=updates, **kind)

    write_spans(
        location,
        [
            load(10),
            load(9, watermark="2100-01-01T00:00:00+00:00"),  # a broken clock's watermark: as of its update
            load(8),
            load(5),  # three hours after the last: stale from an hour after it
            load(4, failed=True),  # no newer data
            load(3, watermark=_iso(end - int(3.5 * HOUR_NS))),  # its data is half an hour old
            load(2, run_type="backfill", logical_date=_iso(end - 20 * HOUR_NS)),  # old data: no drop
        ],
    )
    con = views(location, now)
    (hourly,) = data.datasets(con, now, DAYS)
    history = data.freshness_history(hourly, now)

    def hours_ago(at: datetime.datetime) -> float:
        return round((now - at).total_seconds() / 3600, 2)

    assert [(hours_ago(p["at"]), round(p["minutes"])) for p in history.points] == [
        (10, 0),
        (9, 60),
        (9, 0),
        (8, 60),
        (8, 0),
        (5, 180),
        (5, 0),
        (3, 120),
        (3, 30),
        (0, 210),
    ]
    assert [(hours_ago(s["start"]), hours_ago(s["end"])) for s in history.stale] == [(7, 5), (4, 3), (2.5, 0)]
    assert history.sla_minutes == 60
    # Now, it is the view's answer.
    assert hourly.status["is_stale"] and hourly.status["freshness_minutes"] == round(history.points[-1]["minutes"])


def test_a_stale_datasets_page_charts_its_freshness_with_the_stale_stretch_shaded(seeded_report):
    _, _, text = with_html(seeded_report)
    section = _section(text, "dataset", "orders")  # updated three hours ago, its SLA an hour
    chart = re.search(r'<figure class="chart freshness-history">(<svg.*?</svg>)<figcaption>', section, re.S)
    assert chart and "data age (hours)" in chart.group(1)
    assert f'fill="{charts.STALE_COLOR}"' in chart.group(1)  # the stale stretch, from an hour after the update
    assert "the red stretches are stale" in section
    assert "<img" not in section and not re.findall(r'(?:src|href)="([^"#][^"]*)"', section)  # self-contained


# --- the platform's structure: pipelines, runs, lineage, checks, owners -------------------------------------------


CELL_STATES = {"S": "SUCCESS", "F": "FAILED", "R": "STARTED", "N": "none"}
"""A grid cell's class: its state (``N``: no run of the task in that run)."""


def test_a_pipelines_grid_has_a_row_per_task_and_a_cell_per_run_with_its_latest_attempts_state(platform_report):
    location, now, text = with_html(platform_report)
    section = _section(text, "pipeline", PIPELINE)
    latest = dict(
        ((task, run_id), status)
        for task, run_id, status in views(location, now)
        .execute(
            "SELECT job_name, parent_run_id, max_by(status, attempt) FROM job_runs_latest "
            "WHERE parent_job_name = ? GROUP BY job_name, parent_run_id",
            [PIPELINE],
        )
        .fetchall()
    )
    # The grid's columns: oldest left.
    expected = {task: [latest.get((task, run_id), "none") for run_id in PIPELINE_RUN_IDS] for task in PIPELINE_TASKS}
    shown = {
        html.unescape(task): [CELL_STATES[css] for css in re.findall(r'<td><i class="(\w)"', row)]
        for task, row in re.findall(r'<tr data-task="([^"]*)">(.*?)</tr>', section)
    }
    assert shown == expected
    assert expected["transform"][1] == "SUCCESS"  # the retried attempt, not the failed one
    assert expected["transform"][-1] == "FAILED" and expected["publish"][-1] == "none"


def test_the_jobs_list_shows_jobs_on_their_own_and_the_pipelines_list_each_pipeline(platform_report):
    _, _, text = with_html(platform_report)
    jobs = _list(text, "jobs-table")
    assert jobs == ["load_customers"]  # the pipeline's tasks are rows of its grid, not of the list
    assert _list(text, "pipelines-table") == [PIPELINE]
    assert "3 jobs that run as tasks of a pipeline" in text


def test_a_pipeline_runs_page_has_its_gantt_errors_datasets_and_links(platform_report):
    location, now, text = with_html(platform_report)
    latest = PIPELINE_RUN_IDS[-1]
    start = text.index(f'id="{page.run_anchor(PIPELINE, latest)}"')
    section = text[start : text.index("</section>", start)]
    bars = re.findall(r'<text class="label"[^>]*>([^<]*)</text></a><rect class="(\w+)', section)
    assert bars == [("extract", "SUCCESS"), ("transform", "FAILED")]
    assert "SchemaError" in section and "transform broke" in section
    orchestrator = "https://airflow.example/dags/nightly/grid?dag_run_id=" + urllib.parse.quote(latest, safe="")
    assert f'href="{html.escape(orchestrator)}"' in section
    trace_id = (
        views(location, now)
        .execute("SELECT trace_id FROM job_runs_latest WHERE job_name = 'extract' AND parent_run_id = ?", [latest])
        .fetchone()[0]
    )
    assert f'href="https://traces.example/t/{trace_id}?job=nightly"' in section
    # What each task read and wrote (inputs; its dataset and updates), linking to their pages.
    task_rows = re.findall(r"<tr><td>(.*?)</tr>", section.split("Task runs")[1])
    assert "raw.orders" in task_rows[0] and _dataset_anchor("staging.orders") in task_rows[0]
    assert "customers" in task_rows[1] and "marts.revenue" not in task_rows[1]  # it failed: wrote nothing


def test_long_run_ids_are_shown_short_with_the_whole_id_on_hover(platform_report):
    _, _, text = with_html(platform_report)
    latest = PIPELINE_RUN_IDS[-1]  # scheduled__2026-05-08T00:00:00+00:00
    assert f'<span class="rid" title="{html.escape(latest)}">2026-05-08T00:00…</span>' in text
    assert page.short_run_id("3f2a1b9c-8d7e-4f60-a1b2-c3d4e5f60718") == (
        '<span class="rid" title="3f2a1b9c-8d7e-4f60-a1b2-c3d4e5f60718">3f2a1b9c…</span>'
    )
    assert page.short_run_id("broken-4") == '<span class="rid">broken-4</span>'


def test_the_checks_section_lists_failing_checks_first_and_each_dataset_page_its_own(platform_report):
    location, now, text = with_html(platform_report)
    start = text.index('id="checks"')
    section = text[start : text.index("</section>", start)]
    shown = re.findall(r'<tr class="(failing|passing)"[^>]*><td><a href="#[^"]*">([^<]*)</a></td><td>([^<]*)', section)
    assert shown == [("failing", "marts.revenue", "not_null_revenue"), ("passing", "staging.orders", "row_count")]
    failing = views(location, now).execute("SELECT dataset, check_name FROM failing_checks").fetchall()
    assert failing == [("marts.revenue", "not_null_revenue")]
    assert "not_null_revenue" in _section(text, "dataset", "marts.revenue")
    assert "not_null_revenue" not in _section(text, "dataset", "staging.orders")


def test_every_list_row_names_its_owners_for_the_filter(platform_report):
    _, _, text = with_html(platform_report)
    assert '<option value="team-payments">' in text and '<option value="team-sales">' in text
    rows = {name: owned for owned, name in re.findall(r'<tr[^>]*data-owners="([^"]*)"><td data-value="([^"]*)"', text)}
    assert rows["load_customers"] == "|team-sales|" and rows["customers"] == "|team-sales|"
    assert rows[PIPELINE] == "|team-payments|" and rows["marts.revenue"] == "|team-payments|"


def test_the_pages_script_is_the_one_the_policy_allows(platform_report):
    _, _, text = with_html(platform_report)
    script = re.search(r"<script>(.*?)</script>", text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page.CONTENT_SECURITY_POLICY  # what serve sends as its header
    assert 'id="owner-filter"' in text


def test_the_page_stays_under_5_mb(seeded_report, platform_report):
    for report in (seeded_report, platform_report):
        assert report[2].stat().st_size < 5_000_000


@pytest.fixture(scope="module")
def platform_snapshot(platform_report) -> tuple[data.Snapshot, page.Charts, page.PageOptions]:
    """What ``build`` hands the page of the platform (its snapshot, charts and options), without the page."""
    location, now, _ = platform_report
    captured = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build_module, "render", lambda *args: captured.append(args) or "")
        build_module.build(Options.resolve(location), days=DAYS, now=now)
    return captured[0]


_NAMED = ("job_name", "dataset", "parent_job_name", "upstream_dataset", "downstream_dataset", "last_job_name")


def _scaled(snapshot: data.Snapshot, times: int) -> data.Snapshot:
    """``snapshot`` of a platform ``times`` as large: each job, dataset, pipeline, lineage edge and check again
    under names ending ``~k``, its rows alike (the overview's rows and charts as they were)."""

    def name(value, k):
        return value if value is None or k == 0 else f"{value}~{k}"

    def row(values, k):
        renamed = {key: name(values[key], k) for key in _NAMED if key in values}
        lists = {key: [name(v, k) for v in values[key] or ()] for key in ("inputs", "written") if key in values}
        return {**values, **renamed, **lists}

    def rows(values, k):
        return [row(value, k) for value in values]

    copies = range(times)
    jobs = [
        dataclasses.replace(
            job, name=name(job.name, k), recent=rows(job.recent, k), failed_runs=rows(job.failed_runs, k)
        )
        for k in copies
        for job in snapshot.jobs
    ]
    datasets = [
        dataclasses.replace(d, name=name(d.name, k), status=row(d.status, k), writers=rows(d.writers, k))
        for k in copies
        for d in snapshot.datasets
    ]
    structure = data.Structure(
        [
            data.Pipeline(name(p.name, k), rows(p.runs, k), rows(p.children, k))
            for k in copies
            for p in snapshot.structure.pipelines
        ],
        [edge for k in copies for edge in rows(snapshot.structure.lineage, k)],
        [check for k in copies for check in rows(snapshot.structure.checks, k)],
    )
    return dataclasses.replace(snapshot, jobs=jobs, datasets=datasets, structure=structure)


def test_the_page_stays_under_5_mb_however_many_jobs_the_platform_has(platform_snapshot):
    snapshot, charts_drawn, options = platform_snapshot
    sizes = {}
    for times in (500, 1500):  # the platform's 4 jobs 1,500 times: 6,000 jobs, as many datasets, 1,500 pipelines
        scaled = _scaled(snapshot, times)
        sizes[len(scaled.jobs)] = len(page.render(scaled, charts_drawn, options).encode())
    mid, large = sizes.values()
    assert large < 5_000_000 - 40 * 50_000  # room for the 40 charts of jobs and datasets (about 50 KB each)
    # 500 times the platform is past every cap (1 pipeline each): from there, more jobs add next to nothing.
    assert large < 1.1 * mid


def test_past_the_caps_the_page_says_what_it_left_out_and_links_only_to_pages_it_has(platform_snapshot, monkeypatch):
    snapshot, _, options = platform_snapshot
    for cap in ("LIST_ROWS", "JOB_PAGES", "DATASET_PAGES", "PIPELINE_PAGES", "GRID_TASKS"):
        monkeypatch.setattr(page, cap, 1)
    text = page.render(snapshot, page.Charts(), options)
    assert text.count('class="detail job"') == 1 and text.count('class="detail dataset"') == 1
    assert text.count('class="detail pipeline"') == 1
    jobs, datasets = len(snapshot.jobs), len(snapshot.datasets)
    assert f"Pages are written for 1 of the {jobs} jobs, those needing attention first" in text
    assert f"1 of the {datasets} datasets are listed, stale ones first." in text
    assert len(_list(text, "datasets-table")) == 1
    grid = _section(text, "pipeline", PIPELINE)
    assert f"1 of {len(PIPELINE_TASKS)} shown" in grid and grid.count("<tr data-task=") == 1
    ids = set(re.findall(r'id="([^"]+)"', text))
    assert {target for target in re.findall(r'href="#([^"]+)"', text)} <= ids  # no link to a page not in the file
    assert f'data-job="{html.escape(page.attention_order(snapshot.jobs)[0].name)}"' in text  # the worst has its page


def test_a_datasets_lineage_reaches_two_jobs_each_way_and_places_a_node_once():
    from otel_datasink.report.graphs import Lineage

    edges = [
        {"upstream_dataset": "a", "job_name": "j1", "downstream_dataset": "b"},
        {"upstream_dataset": "b", "job_name": "j2", "downstream_dataset": "c"},
        {"upstream_dataset": "c", "job_name": "j3", "downstream_dataset": "d"},
        {"upstream_dataset": "d", "job_name": "j4", "downstream_dataset": "e"},
        {"upstream_dataset": "c", "job_name": "j5", "downstream_dataset": "a"},  # a cycle back to a
        {"upstream_dataset": "b", "job_name": "j6", "downstream_dataset": "b"},  # a merge into itself
    ]
    columns = Lineage.of(edges).columns("b")
    placed = [node for nodes in columns.values() for node in nodes]
    assert len(placed) == len(set(placed))  # each node once
    assert columns[0] == [("dataset", "b")]
    assert columns[-1] == [("job", "j1"), ("job", "j6")] and columns[-2] == [("dataset", "a")]
    assert columns[1] == [("job", "j2")] and columns[2] == [("dataset", "c")]  # j6 is upstream already
    # c is two steps downstream, so not four upstream (through j5 and a): each node in its nearest column.
    assert columns[-3] == [("job", "j5")] and -4 not in columns
    assert columns[3] == [("job", "j3")] and columns[4] == [("dataset", "d")]
    assert ("dataset", "e") not in placed  # three jobs away


def _list(text: str, table: str) -> list[str]:
    start = text.index(f'id="{table}"')
    body = text[start : text.index("</table>", start)]
    return [html.unescape(name) for name in re.findall(r'<tr[^>]*><td data-value="([^"]*)"', body)]


def _dataset_anchor(name: str) -> str:
    return page.anchor("dataset", name)


def test_a_lineage_graph_orders_each_column_by_its_neighbours_so_that_edges_do_not_cross():
    from otel_datasink.report.graphs import Lineage, lineage_svg

    edges = [
        {"upstream_dataset": "b_input", "job_name": "a_job", "downstream_dataset": "z_table"},
        {"upstream_dataset": "a_input", "job_name": "b_job", "downstream_dataset": "y_table"},
        {"upstream_dataset": "y_table", "job_name": "merge", "downstream_dataset": "out"},
        {"upstream_dataset": "z_table", "job_name": "merge", "downstream_dataset": "out"},
    ]
    svg = lineage_svg(Lineage.of(edges), "out", lambda node: "unknown", lambda node: "#")
    top = {name: float(y) for name, y in re.findall(r'data-node="([^"]*)"><rect x="\d+" y="(\d+)"', svg)}
    assert top["y_table"] < top["z_table"]  # by name, beside the dataset
    assert top["b_job"] < top["a_job"] and top["a_input"] < top["b_input"]  # as what they write and read


def test_names_owners_and_run_ids_full_of_html_are_text_on_the_structures_pages():
    now = datetime.datetime(2026, 5, 4, 12, tzinfo=datetime.timezone.utc)
    evil = HOSTILE_JOB
    child = {
        "job_name": evil,
        "run_id": evil,
        "attempt": 1,
        "status": "FAILED",
        "start_time": now - datetime.timedelta(minutes=5),
        "end_time": now,
        "duration_ms": 300_000,
        "error_type": evil,
        "error_message": HOSTILE_MESSAGE,
        "trace_id": "abc",
        "span_id": "def",
        "dataset": evil,
        "inputs": [evil],
        "owners": [evil],
        "parent_job_name": evil,
        "parent_run_id": evil + "-run-id-long",
        "written": [evil],
    }
    run = {
        "parent_job_name": evil,
        "parent_run_id": child["parent_run_id"],
        "child_runs": 1,
        "child_jobs": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 1,
        "first_start_time": child["start_time"],
        "last_end_time": now,
        "last_event_time": now,
        "recency": 1,
    }
    job = data.Job(evil, "FAILED", child["start_time"], recent=[child | {"records_processed": None, "run_type": None}])
    status = {"dataset": evil, "is_stale": True, "last_status": "SUCCESS", "last_success_at": now}
    status |= {"data_as_of": now, "freshness_minutes": 1, "freshness_sla_minutes": 1, "record_count": 1}
    status |= {"last_job_name": evil}
    check = {"dataset": evil, "check_name": evil, "status": "FAILED", "column_name": evil, "actual": evil}
    check |= {"expected": evil, "severity": evil, "checked_at": now, "job_name": evil}
    structure = data.Structure(
        pipelines=[data.Pipeline(evil, [run], [child])],
        lineage=[{"upstream_dataset": evil, "job_name": evil, "downstream_dataset": evil + "2"}],
        checks=[check],
    )
    dataset = data.Dataset(evil, status, writers=[{"job_name": evil, "updates": 1, "last_update_at": now}])
    snapshot = data.Snapshot(now, 30, [], [job], [dataset], [], [], [], None, structure)
    options = page.PageOptions("here", "https://t/{trace_id}", None, now, "https://a/{job_name}/{run_id}")
    text = page.render(snapshot, page.Charts(), options)
    assert "<b>" not in text and "<script>window" not in text and text.count("<script") == 1
    assert html.escape(evil) in _section(text, "pipeline", evil)
    quoted = urllib.parse.quote(evil, safe="")
    assert f'href="https://a/{html.escape(quoted)}/' in text  # the run link's fields percent-encoded
