"""Each condition kind from rows the real pipeline wrote (mapping, then writer), evaluated at a chosen instant."""

from __future__ import annotations

import datetime

import pytest
from job_spans import DAY_NS, HOUR_NS, MINUTE_NS, job_span, now_ns, write_spans

from otel_datasink import catalog, local
from otel_datasink.alerts import conditions
from otel_datasink.alerts.rules import Rule, Rules

SECOND_NS = 1_000_000_000


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """A stale dataset, a job failing three times, a hung run, a volume drop, a job that stopped running, and
    healthy neighbours of each; returns (location, now)."""
    location = str(tmp_path_factory.mktemp("alerts") / "datasink")
    n = now_ns() // 1_000_000 * 1_000_000  # the tables keep milliseconds
    spans = []

    def run(job, end_ns, minutes=5, **kwargs):
        spans.append(job_span(job, end_ns - minutes * MINUTE_NS, end_ns, **kwargs))

    run("load_orders", n - 3 * HOUR_NS, updates=[dict(name="orders", freshness_sla_minutes=60)])
    run("load_customers", n - 10 * MINUTE_NS, updates=[dict(name="customers", freshness_sla_minutes=60)])
    for hours, failed in ((5, False), (4, True), (3, True), (2, True)):
        run("broken", n - hours * HOUR_NS, failed=failed, error="KeyError", run_id=f"broken-{hours}")
    for hours, failed in ((3, True), (2, False)):
        run("recovered", n - hours * HOUR_NS, failed=failed)
    run("once", n - HOUR_NS, failed=True, error="ValueError", run_id="once-1")
    spans.append(job_span("slow", n - 3 * HOUR_NS, None, run_id="slow-hung"))
    for day in range(1, 14):
        run("ingest", n - day * DAY_NS, records=1000 + (day % 3) * 10, run_id=f"ingest-{day}")
    run("ingest", n - 2 * HOUR_NS, records=3, run_id="ingest-drop")
    run("hourly", n - 5 * HOUR_NS, run_id="hourly-last")
    run("punctual", n - 20 * MINUTE_NS)
    write_spans(location, spans)
    return location, datetime.datetime.fromtimestamp(n / 1e9, tz=datetime.timezone.utc)


RULES = Rules(
    rules=(
        Rule(job="broken", failure_streak=3, owners=("@etl",), severity="critical"),
        Rule(job="once", failure_streak=2),
        Rule(job="hourly", expected_every=datetime.timedelta(hours=1)),
        Rule(job="punctual", expected_every=datetime.timedelta(hours=1)),
        Rule(job="never_ran", expected_every=datetime.timedelta(hours=1)),
        Rule(dataset="orders", owners=("data@example.com",), notify=("json://127.0.0.1:1/",), group="digest"),
    ),
    default_targets=("json://default.example/",),
)


def _evaluate(scenario, rules=RULES, **kwargs):
    location, now = scenario
    con = local.connect(location)
    catalog.pin_time(con, now, None)
    return {c.key: c for c in conditions.evaluate(con, rules, now, **kwargs)}


def test_each_kind_holds_for_its_subject_and_only_there(scenario):
    found = _evaluate(scenario)
    assert set(found) == {
        ("stale_dataset", "orders"),
        ("failing_job", "broken"),
        ("hung_run", "slow"),
        ("volume_anomaly", "ingest"),
        ("missing_run", "hourly"),
        ("missing_run", "never_ran"),
    }


def test_a_stale_dataset_says_its_age_against_its_sla_and_takes_its_rule(scenario):
    stale = _evaluate(scenario, trace_url="https://t/{trace_id}", run_url="https://r/{job_name}/{run_id}")[
        ("stale_dataset", "orders")
    ]
    assert stale.links["trace"] == f"https://t/{stale.details['trace_id']}" and stale.links["run"].startswith(
        "https://r/load_orders/"
    )
    assert "orders is stale: data 3 h old, SLA 60 min" in stale.summary
    assert stale.details["freshness_minutes"] == 180 and stale.details["freshness_sla_minutes"] == 60
    assert stale.since == scenario[1] - datetime.timedelta(hours=2)  # data as of 3 h ago, 1 h of SLA
    assert (stale.owners, stale.targets, stale.group, stale.severity) == (
        ("data@example.com",),
        ("json://127.0.0.1:1/",),
        "digest",
        "warning",
    )


def test_a_failing_job_says_its_streak_since_its_first_failure_and_the_last_error(scenario):
    failing = _evaluate(scenario, trace_url="https://t.example/{trace_id}", run_url="https://r/{job_name}/{run_id}")
    broken = failing[("failing_job", "broken")]
    assert broken.details["current_streak"] == 3 and broken.severity == "critical"
    assert "failed 3 runs in a row" in broken.summary and "KeyError: broken broke" in broken.summary
    assert broken.since == scenario[1] - datetime.timedelta(hours=4)
    assert broken.links["run"] == "https://r/broken/broken-2"
    assert broken.links["trace"].startswith("https://t.example/") and broken.targets == ("json://default.example/",)
    # A streak below the rule's threshold is no condition: "once" failed once, its rule wants two.
    assert ("failing_job", "once") not in failing


def test_the_default_failure_streak_is_one(scenario):
    found = _evaluate(scenario, Rules())
    assert {s for k, s in found if k == "failing_job"} == {"broken", "once"}
    assert found[("failing_job", "once")].severity == "critical" and found[("failing_job", "once")].targets == ()


def test_a_hung_run_says_how_long_it_has_run_against_its_threshold(scenario):
    hung = _evaluate(scenario)[("hung_run", "slow")]
    assert "run slow-hung" in hung.summary and "still running after 3 h (hung after 60 min)" in hung.summary
    assert hung.details["run_id"] == "slow-hung"


def test_a_volume_anomaly_says_its_z_score_within_the_window_only(scenario):
    anomaly = _evaluate(scenario)[("volume_anomaly", "ingest")]
    assert anomaly.details["run_id"] == "ingest-drop" and anomaly.details["direction"] == "drop"
    assert "processed 3 records, a drop (z-score -" in anomaly.summary
    narrow = Rules((Rule(job="ingest", volume_window=datetime.timedelta(hours=1)),))
    assert ("volume_anomaly", "ingest") not in _evaluate(scenario, narrow)
    picky = Rules((Rule(job="ingest", min_z=1e6),))
    assert ("volume_anomaly", "ingest") not in _evaluate(scenario, picky)


def test_a_missing_run_is_a_job_not_started_within_its_interval_or_never(scenario):
    found = _evaluate(scenario)
    assert "has not run since" in found[("missing_run", "hourly")].summary
    assert "expected every 60 min" in found[("missing_run", "hourly")].summary
    assert found[("missing_run", "hourly")].since == scenario[1] - datetime.timedelta(hours=4, minutes=5)
    never = found[("missing_run", "never_ran")]
    assert never.summary == "job never_ran has not run: expected every 60 min, no run seen"


def test_a_disabled_rule_mutes_what_it_selects_and_kinds_narrow_a_rule(scenario):
    muted = Rules((Rule(job="*", kinds=("hung_run",), enabled=False),))
    found = _evaluate(scenario, muted)
    assert ("hung_run", "slow") not in found and ("failing_job", "broken") in found


def test_a_job_rule_selects_the_datasets_its_jobs_last_updated(scenario):
    owned = Rules((Rule(job="load_*", owners=("@loaders",)),))
    assert _evaluate(scenario, owned)[("stale_dataset", "orders")].owners == ("@loaders",)


def test_evaluating_later_makes_fresh_data_stale(scenario):
    location, now = scenario
    later = (location, now + datetime.timedelta(hours=2))
    assert ("stale_dataset", "customers") in _evaluate(later)


def test_an_unknown_template_field_is_refused():
    with pytest.raises(ValueError, match=r"--trace-url: unknown field \{trace\}"):
        conditions.check_template("https://x/{trace}", "--trace-url")
