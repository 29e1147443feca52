"""The report in a real browser (headless Chromium through Playwright): opened from ``file://`` it makes no
request at all and logs no error, shows the views' numbers, and a job's page its failures; ``serve`` shows the
same over HTTP and picks up a run written after it started.

``OTEL_DATASINK_UPDATE_SCREENSHOT=1`` saves the overview as ``docs/dashboard.png`` (the README's picture), built of
the scenario without its job named in HTML.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from browser import PageWatch, chromium
from job_spans import MINUTE_NS, job_span, write_spans
from report_scenario import HOSTILE_JOB, HOSTILE_MESSAGE, PIPELINE, PIPELINE_RUN_IDS, PIPELINE_TASKS, build_report
from serve_process import serving

from otel_datasink import local
from otel_datasink.catalog import pin_time
from otel_datasink.report import charts, data, page

pytest.importorskip("vl_convert", reason="the report extra (vl-convert-python) is not installed")

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"
UPDATE_SCREENSHOT = "OTEL_DATASINK_UPDATE_SCREENSHOT"


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def readme_report(tmp_path_factory):
    """As :func:`seeded_report`, without the job and message full of HTML: the page the README's picture shows."""
    return build_report(tmp_path_factory.mktemp("readme_report"), hostile=False)


@pytest.fixture
def watch(browser):
    opened = PageWatch(browser)
    yield opened
    opened.close()


def expected_figures(location, now) -> dict[str, str]:
    """The overview's figures as the page must show them, from the views."""
    con = local.connect(location, parameters=data.STATE_PARAMETERS)
    pin_time(con, now, data.STATE_PARAMETERS)
    trend = local.connect(location, parameters=data.trend_parameters(30))
    pin_time(trend, now, data.trend_parameters(30))
    start = data.period_start(now, 30)
    runs, failures = trend.execute(
        "SELECT sum(runs), sum(failures) FROM runtime_trend WHERE run_date BETWEEN ? AND ?", [start, now.date()]
    ).fetchone()

    def count(sql: str) -> str:
        return f"{con.execute(sql).fetchone()[0]:,}"

    return {
        "runs": f"{runs:,}",
        "success rate": f"{100 * (runs - failures) / runs:.1f}%",
        "failing jobs": count("SELECT count(*) FROM recurring_failures WHERE current_streak > 0"),
        "stale datasets": count("SELECT count(*) FROM stale_datasets"),
        "hung runs": count("SELECT count(*) FROM hung_runs"),
    }


def shown_figures(browser_page) -> dict[str, str]:
    tiles = browser_page.locator(".tile")
    return {
        tiles.nth(i).locator(".name").inner_text(): tiles.nth(i).locator(".value").inner_text()
        for i in range(tiles.count())
    }


def test_the_file_opens_offline_and_shows_the_views_numbers(seeded_report, watch):
    location, now, out = seeded_report
    url = out.as_uri()
    watch.page.goto(url, wait_until="load")
    assert watch.requests == [url]  # the document, and nothing else: no font, script, style or image
    assert watch.errors == []
    assert shown_figures(watch.page) == expected_figures(location, now)
    assert watch.page.evaluate("document.querySelectorAll('svg').length") > 5
    # The stale dataset and the failing job stand out where a morning look goes.
    assert watch.page.locator("#datasets-table tr.stale").inner_text().startswith("orders")
    streaks = watch.page.locator("#jobs-table td.bad").all_inner_texts()
    assert sorted(streaks) == ["2", "3"]


def test_the_overview_screenshot_is_a_picture_of_a_plausible_location(readme_report, watch):
    _, _, out = readme_report
    watch.page.goto(out.as_uri(), wait_until="load")
    assert HOSTILE_JOB not in watch.page.inner_text("body")  # the escaping test's name is no sight for a reader
    shot = watch.page.screenshot(full_page=False)
    drawn = "[...document.querySelectorAll('svg')].filter(s => s.getBoundingClientRect().width > 50).length"
    assert watch.page.evaluate(drawn) >= 3
    assert len(shot) > 40_000  # a blank or nearly blank page compresses to a few kilobytes
    if os.environ.get(UPDATE_SCREENSHOT):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        watch.page.set_viewport_size({"width": 1280, "height": 1000})
        watch.page.screenshot(path=str(SCREENSHOT), full_page=False)


def test_a_jobs_page_shows_its_failures_with_their_messages(seeded_report, watch):
    location, now, out = seeded_report
    watch.page.goto(out.as_uri(), wait_until="load")
    watch.page.click("#jobs-table a:text-is('broken')")
    section = watch.page.locator(f"#{page.anchor('job', 'broken')}")
    assert section.is_visible()
    assert not watch.page.locator("#overview").is_visible()  # the job's page alone
    rows = section.locator("table.failures tbody tr")
    assert rows.count() == 3
    assert rows.nth(0).locator("td").nth(2).inner_text() == "broken broke"
    assert rows.nth(0).locator("td").nth(1).inner_text() == "KeyError"
    link = rows.nth(0).locator("a")
    assert re.fullmatch(r"https://traces\.example/t/[0-9a-f]{32}\?job=broken", link.get_attribute("href"))
    assert section.locator("svg").count() == 1
    assert watch.errors == [] and watch.requests == [out.as_uri()]


def test_html_in_names_and_messages_is_shown_as_text(seeded_report, watch):
    _, _, out = seeded_report
    watch.page.goto(f"{out.as_uri()}#{page.anchor('job', HOSTILE_JOB)}", wait_until="load")
    section = watch.page.locator(f"#{page.anchor('job', HOSTILE_JOB)}")
    assert section.locator("h2").inner_text() == f"Job {HOSTILE_JOB}"
    assert HOSTILE_MESSAGE in section.inner_text()
    assert watch.page.evaluate("window.pwned") is None
    assert watch.errors == []


def test_the_jobs_list_filters_and_sorts(seeded_report, watch):
    _, _, out = seeded_report
    watch.page.goto(out.as_uri(), wait_until="load")
    watch.page.fill("#job-filter", "ing")
    visible = watch.page.locator("#jobs-table tbody tr:visible td:first-child").all_inner_texts()
    assert visible == ["ingest"]
    watch.page.fill("#job-filter", "")
    watch.page.click("#jobs-table th:text-is('failure streak')")
    first = watch.page.locator("#jobs-table tbody tr td:first-child").first.inner_text()
    assert first == "broken"  # the longest streak first
    assert watch.errors == []


def open_page(browser_page, url: str) -> None:
    """Opens ``url``, again if the page's own refresh (every second here) cut the navigation short."""
    for _ in range(5):
        try:
            browser_page.goto(url, wait_until="load")
            return
        except Exception as error:  # Playwright's Error; the refresh's navigation aborts the test's
            if "ERR_ABORTED" not in str(error):
                raise
    browser_page.goto(url, wait_until="load")


def test_serve_shows_the_page_over_http_and_picks_up_new_runs(seeded_report, watch):
    location, _, _ = seeded_report
    with serving(location, "--listen", "127.0.0.1:0", "--refresh", "1") as line:
        assert line.startswith("serving http://127.0.0.1:"), line
        url = re.search(r"http://\S+", line).group(0)
        open_page(watch.page, url)
        assert watch.requests[-1] == url and set(watch.requests) == {url} and watch.errors == []
        before = int(shown_figures(watch.page)["runs"].replace(",", ""))
        end = time.time_ns()
        write_spans(location, [job_span("late_job", end - MINUTE_NS, end)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.5)
            open_page(watch.page, url)
            if watch.page.locator("#jobs-table a:text-is('late_job')").count():
                break
        assert watch.page.locator("#jobs-table a:text-is('late_job')").count() == 1
        assert int(shown_figures(watch.page)["runs"].replace(",", "")) == before + 1
        assert watch.errors == []
        assert all(request.startswith(url) for request in watch.requests)


def test_the_served_page_runs_its_own_script_and_no_other_under_the_servers_policy(seeded_report, watch):
    location, _, _ = seeded_report
    with serving(location, "--listen", "127.0.0.1:0") as line:
        url = re.search(r"http://\S+", line).group(0)
        policy = watch.page.goto(url, wait_until="load").headers["content-security-policy"]
        assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+';", policy), policy  # no 'unsafe-inline'
        watch.page.fill("#job-filter", "ing")  # the page's script filters the jobs
        assert watch.page.locator("#jobs-table tbody tr:visible td:first-child").all_inner_texts() == ["ingest"]
        assert watch.page.evaluate("window.pwned") is None  # the message's <script> is text
        assert watch.errors == []  # Chromium logs each refusal of the policy as an error


def test_a_served_page_behind_a_token_opens_in_a_browser_with_the_token_as_password(seeded_report, browser, tmp_path):
    location, _, _ = seeded_report
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    with serving(location, "--listen", "127.0.0.1:0", "--token-file", str(token_file)) as line:
        url = re.search(r"http://\S+", line).group(0)
        # Without the token, or with a wrong one, the server keeps answering 401: the (headless) browser shows that
        # answer or gives up on the credentials, as Chromium decides.
        for credentials in (None, {"username": "me", "password": "guess"}):
            refused = browser.new_context(http_credentials=credentials)
            try:
                assert refused.new_page().goto(url).status == 401
            except Exception as error:  # Playwright's Error
                assert "ERR_INVALID_AUTH_CREDENTIALS" in str(error)
            refused.close()
        reader = browser.new_context(http_credentials={"username": "me", "password": "s3cret"})
        page_ = reader.new_page()
        assert page_.goto(url).status == 200
        assert shown_figures(page_)["runs"]  # the page itself, not an error text
        reader.close()


# --- the platform's structure: a pipeline's grid, a run's Gantt, a dataset's lineage, the owner filter ---------

WIDE = {"width": 1400, "height": 900}
"""The width the structure's pages are read at (and pictured): a pipeline grid and a lineage graph must fit it."""
PIPELINE_GRID = SCREENSHOT.parent / "pipeline-grid.png"
LINEAGE = SCREENSHOT.parent / "lineage.png"
RUN_GANTT = SCREENSHOT.parent / "run-gantt.png"
FRESHNESS_HISTORY = SCREENSHOT.parent / "dataset-freshness.png"


def opened_wide(watch, report, anchor: str):
    """The page of ``report`` at ``#anchor``, 1400 px wide; the section shown."""
    watch.page.set_viewport_size(WIDE)
    watch.page.goto(f"{report[2].as_uri()}#{anchor}", wait_until="load")
    return watch.page.locator(f"#{anchor}")


def picture(watch, path: Path) -> None:
    """Saves the viewport as ``path`` (docs/) with ``OTEL_DATASINK_UPDATE_SCREENSHOT=1``."""
    if os.environ.get(UPDATE_SCREENSHOT):
        watch.page.screenshot(path=str(path), full_page=False)


def test_a_pipelines_grid_shows_each_tasks_state_in_each_run_at_1400_px(platform_report, watch):
    watch.page.set_viewport_size(WIDE)
    watch.page.goto(platform_report[2].as_uri(), wait_until="load")
    watch.page.click(f"#pipelines-table a:text-is('{PIPELINE}')")
    grid = watch.page.locator(f"#{page.pipeline_anchor(PIPELINE)} table.grid")
    assert grid.is_visible() and not watch.page.locator("#overview").is_visible()
    states = {
        task: grid.locator(f"tr[data-task='{task}'] td i").evaluate_all(
            "cells => cells.map(c => ({S: 'SUCCESS', F: 'FAILED', R: 'STARTED', N: 'none'})[c.className])"
        )
        for task in PIPELINE_TASKS
    }
    assert states["extract"] == ["SUCCESS"] * len(PIPELINE_RUN_IDS)
    assert states["transform"][-1] == "FAILED" and states["publish"][-1] == "none"
    # The cells are coloured as the legend says.
    color = "el => getComputedStyle(el).backgroundColor"
    failed = grid.locator("tr[data-task='transform'] td i").last.evaluate(color)
    assert failed == watch.page.locator(".legend i.F").first.evaluate(color) == "rgb(198, 40, 40)"
    box = grid.bounding_box()
    assert box["x"] + box["width"] <= WIDE["width"]  # readable without scrolling
    assert watch.errors == [] and watch.requests == [platform_report[2].as_uri()]
    picture(watch, PIPELINE_GRID)


def test_a_runs_page_draws_its_tasks_on_a_gantt(platform_report, watch):
    section = opened_wide(watch, platform_report, page.run_anchor(PIPELINE, PIPELINE_RUN_IDS[-1]))
    bars = section.locator("svg.gantt g")
    assert bars.count() == 2
    extract, transform = (bars.nth(i).locator("rect").bounding_box() for i in range(2))
    assert extract["x"] + extract["width"] <= transform["x"] + 1  # transform started after extract ended
    assert (
        section.locator("a:text-is('orchestrator')")
        .get_attribute("href")
        .startswith("https://airflow.example/dags/nightly/grid?dag_run_id=scheduled__")
    )
    assert watch.errors == []
    picture(watch, RUN_GANTT)


def test_a_datasets_lineage_has_a_node_per_dataset_coloured_by_health(platform_report, watch):
    section = opened_wide(watch, platform_report, page.anchor("dataset", "marts.revenue"))
    graph = section.locator("svg.lineage")
    nodes = dict(
        graph.locator(".node").evaluate_all(
            "nodes => nodes.map(n => [n.dataset.node, n.getAttribute('class').split(' ').slice(1).join(' ')])"
        )
    )
    assert nodes == {
        "raw.orders": "dataset unknown",  # read, never written where the views see it
        "extract": "job ok",
        "staging.orders": "dataset fresh",
        "load_customers": "job ok",
        "customers": "dataset fresh",
        "transform": "job failing",
        "marts.revenue": "dataset stale center",  # the page's own dataset
        "publish": "job ok",
        "reports.daily": "dataset stale",
    }
    box = graph.bounding_box()
    assert box["x"] + box["width"] <= WIDE["width"]
    # A node is a link to its page, when the file has one: raw.orders, never written in sight, has none.
    assert graph.locator("a.node[data-node='raw.orders']").count() == 0
    graph.locator("a.node[data-node='staging.orders']").click()
    assert watch.page.locator(f"#{page.anchor('dataset', 'staging.orders')}").is_visible()
    assert watch.errors == []
    watch.page.goto(f"{platform_report[2].as_uri()}#{page.anchor('dataset', 'marts.revenue')}", wait_until="load")
    graph.scroll_into_view_if_needed()
    picture(watch, LINEAGE)


def test_a_stale_datasets_page_shows_its_freshness_over_time_stale_from_its_sla_on(seeded_report, watch):
    section = opened_wide(watch, seeded_report, page.anchor("dataset", "orders"))
    chart = section.locator("figure.freshness-history svg")
    assert chart.is_visible()
    # Updated three hours ago with an SLA of an hour: the line runs from the update to now, stale for its last
    # two thirds.
    line = chart.locator('path[stroke="#455a64"]').bounding_box()
    stale = chart.locator(f'path[fill="{charts.STALE_COLOR}"]')
    assert stale.count() == 1
    box = stale.bounding_box()
    assert box["x"] - line["x"] == pytest.approx(line["width"] / 3, abs=3)
    assert box["x"] + box["width"] == pytest.approx(line["x"] + line["width"], abs=2)
    assert line["x"] + line["width"] <= WIDE["width"]
    assert watch.errors == [] and watch.requests == [seeded_report[2].as_uri()]
    chart.scroll_into_view_if_needed()
    picture(watch, FRESHNESS_HISTORY)


def test_the_owner_filter_hides_other_owners_rows_in_every_list(platform_report, watch):
    watch.page.goto(platform_report[2].as_uri(), wait_until="load")

    def visible(table: str) -> list[str]:
        return watch.page.locator(f"#{table} tbody tr:visible td:first-child").all_inner_texts()

    assert visible("datasets-table") == ["marts.revenue", "reports.daily", "customers", "staging.orders"]
    watch.page.select_option("#owner-filter", "team-sales")
    assert visible("jobs-table") == ["load_customers"]
    assert visible("pipelines-table") == []
    assert visible("datasets-table") == ["customers"]
    assert visible("checks-table") == []
    watch.page.select_option("#owner-filter", "team-payments")
    assert visible("jobs-table") == [] and visible("pipelines-table") == [PIPELINE]
    assert visible("checks-table") == ["marts.revenue", "staging.orders"]
    watch.page.reload(wait_until="load")  # as serve's refresh does: the owner chosen stays
    assert watch.page.input_value("#owner-filter") == "team-payments" and visible("jobs-table") == []
    watch.page.select_option("#owner-filter", "")
    assert visible("jobs-table") == ["load_customers"] and len(visible("datasets-table")) == 4
    assert watch.errors == []
