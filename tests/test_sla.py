"""SLA verification end to end: deadline rules in the rules file, ``otel-datasink alert`` at pinned instants
(``--now``) writing the verdicts of closed periods to ``sla_results`` and telling a real HTTP receiver of
``missed_deadline`` and ``deadline_at_risk``; the views ``sla_verdicts`` and ``sla_attainment`` read back by DuckDB."""

from __future__ import annotations

import datetime
import threading

import pytest
from job_spans import MINUTE_NS, job_span, write_spans
from receiver import Receiver

from otel_datasink import cli, local
from otel_datasink.alerts.deadlines import parse_deadline
from otel_datasink.alerts.engine import Evaluator
from otel_datasink.alerts.rules import RulesError, load_rules
from otel_datasink.config import Options
from otel_datasink.lease import Busy

pytest.importorskip("apprise")

UTC = datetime.timezone.utc


def _at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def _ns(moment: datetime.datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def _run(job: str, start: str, minutes: int, **options) -> object:
    begin = _ns(_at(start))
    return job_span(job, begin, begin + minutes * MINUTE_NS, **options)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _rules(tmp_path, text: str) -> str:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return str(path)


def _alert(location, rules, now, *flags):
    return cli.main(["alert", "--location", location, "--rules", rules, "--now", now.isoformat(), *flags])


def _verdicts(location, now):
    con = local.connect(location)
    try:
        from otel_datasink.catalog import pin_time

        pin_time(con, now, None)
        return con.execute(
            "SELECT strftime(period_start, '%m-%d'), verdict, late_by_minutes, first_verdict FROM sla_verdicts "
            "WHERE kind = 'deadline' ORDER BY period_start"
        ).fetchall()
    finally:
        con.close()


def _results(location):
    con = local.connect(location)
    try:
        return con.execute(
            "SELECT subject, kind, strftime(period_start, '%m-%d %H:%M'), met, late_by_minutes FROM sla_results "
            "ORDER BY period_start, evaluated_at"
        ).fetchall()
    finally:
        con.close()


def test_a_deadline_met_then_missed_then_met_late_and_at_risk_before_the_next(tmp_path, receiver):
    location = str(tmp_path / "datasink")
    rules = _rules(tmp_path, '[[rule]]\njob = "load_*"\ndeadline = "07:00"\n')
    # 03-10: done 05:40, in time. 03-11: nothing by 07:00, done 08:45. Usual duration: 40 min (p50 of 40 and 45).
    write_spans(location, [_run("load_orders", "2026-03-10 05:00", 40)])
    notify = ("--notify", receiver.url)
    assert _alert(location, rules, _at("2026-03-11 07:10"), *notify) == 0
    (fired,) = [body["title"] + body["message"] for body in receiver.take()]
    assert "load_orders missed its SLA deadline 07:00 UTC" in fired
    assert _results(location) == [
        ("load_orders", "deadline", "03-10 00:00", True, 0),
        ("load_orders", "deadline", "03-11 00:00", False, None),
    ]

    write_spans(location, [_run("load_orders", "2026-03-11 08:00", 45)])
    assert _alert(location, rules, _at("2026-03-11 09:00"), *notify) == 0
    (resolved,) = [body["title"] + body["message"] for body in receiver.take()]
    assert "met its SLA deadline 07:00 UTC due 2026-03-11 07:00 UTC late by 105 min" in resolved
    # The first verdict stays, the correction is a row of its own; the view shows the latest.
    assert _results(location)[1:] == [
        ("load_orders", "deadline", "03-11 00:00", False, None),
        ("load_orders", "deadline", "03-11 00:00", False, 105),
    ]
    assert _verdicts(location, _at("2026-03-11 09:00")) == [
        ("03-10", "met", 0, "met"),
        ("03-11", "met_late", 105, "missed"),
    ]

    # 03-12 06:25: no run started, and a usual run (40 min) would end after 07:00.
    assert _alert(location, rules, _at("2026-03-12 06:10"), *notify) == 0
    assert receiver.take() == []
    assert _alert(location, rules, _at("2026-03-12 06:25"), *notify) == 0
    (risk,) = [body["title"] + body["message"] for body in receiver.take()]
    assert "load_orders may miss its SLA deadline 07:00 UTC" in risk and "no run started by 2026-03-12 06:20" in risk
    con = local.connect(location)
    kinds = con.execute("SELECT kind, state FROM alerts ORDER BY event_time").fetchall()
    con.close()
    assert kinds == [("missed_deadline", "FIRING"), ("missed_deadline", "RESOLVED"), ("deadline_at_risk", "FIRING")]


def test_a_running_run_whose_usual_duration_passes_the_deadline_puts_it_at_risk(tmp_path, receiver):
    location = str(tmp_path / "datasink")
    rules = _rules(tmp_path, '[[rule]]\njob = "load_orders"\ndeadline = "07:00"\n')
    started = _run("load_orders", "2026-03-11 06:30", 40)
    from job_spans import started as start_of

    write_spans(location, [_run("load_orders", "2026-03-10 05:00", 40), start_of(started)])
    assert _alert(location, rules, _at("2026-03-11 06:35"), "--notify", receiver.url) == 0
    (risk,) = [body["title"] + body["message"] for body in receiver.take()]
    assert "started 2026-03-11 06:30 UTC, expected to end 2026-03-11 07:10 UTC" in risk


def test_a_deadline_is_read_on_the_wall_clock_of_its_time_zone_across_daylight_saving_time(tmp_path, capsys):
    # Berlin moves from UTC+1 to UTC+2 on 2026-03-29: 07:00 there is 06:00 UTC the day before, 05:00 UTC that day.
    location = str(tmp_path / "datasink")
    rules = _rules(tmp_path, '[[rule]]\njob = "export"\ndeadline = "07:00"\ntimezone = "Europe/Berlin"\n')
    write_spans(location, [_run("export", "2026-03-28 05:00", 30), _run("export", "2026-03-29 05:00", 30)])
    assert _alert(location, rules, _at("2026-03-29 12:00")) == 0
    assert "SLA verdicts recorded: 1 met, 1 met late, 0 missed" in capsys.readouterr().out
    assert _results(location) == [
        ("export", "deadline", "03-27 23:00", True, 0),  # the period starts at midnight Berlin time
        ("export", "deadline", "03-28 23:00", False, 30),  # done 05:30 UTC = 07:30 CEST
    ]
    deadline = parse_deadline("07:00")
    assert [p.deadline.hour for p in deadline.periods(_at("2026-03-28 00:00"), _at("2026-03-30 00:00"))] == [7, 7]


def test_two_evaluations_at_once_and_every_later_one_write_each_period_once(tmp_path):
    location = str(tmp_path / "datasink")
    rules = load_rules(_rules(tmp_path, '[[rule]]\njob = "load_*"\ndeadline = "07:00"\nmax_duration = "30m"\n'))
    write_spans(location, [_run("load_orders", f"2026-03-{day} 05:00", 40) for day in range(10, 14)])
    now = _at("2026-03-13 12:00")
    barrier = threading.Barrier(2)

    def evaluate() -> None:
        barrier.wait()
        try:
            Evaluator(Options.resolve(location), rules).evaluate(now)
        except Busy:  # the other holds the lock: it writes this round
            pass

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for later in (now, now + datetime.timedelta(hours=1)):  # a restart: a new evaluator reads what was written
        Evaluator(Options.resolve(location), rules).evaluate(later)
    results = _results(location)
    assert len(results) == len(set(results)) == 8  # 4 days x (deadline, max_duration), each once
    assert {(kind, met) for _, kind, _, met, _ in results} == {("deadline", True), ("max_duration", False)}


def test_attainment_per_week_and_month(tmp_path):
    location = str(tmp_path / "datasink")
    rules = _rules(tmp_path, '[[rule]]\njob = "load_orders"\ndeadline = "07:00"\n')
    write_spans(
        location,
        [
            _run("load_orders", f"2026-03-{day:02d} {hour}", 10)
            for day, hour in [(9, "05:00"), (10, "05:00"), (11, "08:00"), (12, "05:00")]
        ],
    )
    assert _alert(location, rules, _at("2026-03-12 12:00")) == 0
    con = local.connect(location)
    rows = con.execute(
        "SELECT grain, CAST(starting AS varchar), periods, met, met_late, missed, attainment_pct FROM sla_attainment "
        "ORDER BY grain"
    ).fetchall()
    con.close()
    assert rows == [("month", "2026-03-01", 4, 3, 1, 0, 75.0), ("week", "2026-03-09", 4, 3, 1, 0, 75.0)]

    # The report's overview: the SLAs missed in the period, and per SLA its latest period and attainment.
    page = tmp_path / "report.html"
    argv = ["report", "--location", location, "--out", str(page), "--days", "7", "--now", "2026-03-12T12:00:00Z"]
    assert cli.main(argv) == 0
    html = page.read_text()
    assert "<h3>SLAs <small>1 missed in the 7 days</small></h3>" in html
    assert "<td>load_orders</td><td>deadline 07:00 UTC</td><td>2026-03-12 07:00</td><td>met</td><td>4</td>" in html
    assert "<td>75.0 %</td>" in html


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('deadline = "7am"', 'line 3: rule[1].deadline: must be a time of day "HH:MM"'),
        ('deadline = "07:00"\ntimezone = "Mars/Olympus"', "line 4: rule[1].timezone: unknown time zone"),
        ('timezone = "UTC"', "line 3: rule[1].timezone: timezone is the deadline's"),
        ('within = "2"', "line 3: rule[1].within: must be a duration"),
    ],
)
def test_a_mistyped_deadline_rule_is_reported_with_its_key_and_line(tmp_path, rule, message):
    path = _rules(tmp_path, f'[[rule]]\njob = "x"\n{rule}\n')
    with pytest.raises(RulesError, match=None) as raised:
        load_rules(path)
    assert message in str(raised.value)


def test_within_and_max_duration_are_for_runs_not_datasets(tmp_path):
    path = _rules(tmp_path, '[[rule]]\ndataset = "orders"\nmax_duration = "45m"\n')
    with pytest.raises(RulesError, match="line 3: rule.1..max_duration: max_duration is for runs"):
        load_rules(path)


def test_a_replayed_update_and_a_backfill_correct_missed_periods_of_a_dataset_deadline(tmp_path):
    location = str(tmp_path / "datasink")
    rules = _rules(tmp_path, '[[rule]]\ndataset = "orders"\ndeadline = "07:00"\n')
    write_spans(location, [_run("load", "2026-03-09 05:00", 10, updates=[dict(name="orders")])])
    assert _alert(location, rules, _at("2026-03-11 12:00")) == 0
    assert [met for *_, met, _ in _results(location)] == [True, False, False]  # 03-09 met; 03-10, 03-11 missed
    # The collector was down on 03-10: its update comes now, replayed with its own time (06:00): in time after all.
    write_spans(location, [_run("load", "2026-03-10 05:50", 10, updates=[dict(name="orders")])])
    assert _alert(location, rules, _at("2026-03-11 13:00")) == 0
    assert _verdicts(location, _at("2026-03-11 13:00")) == [
        ("03-09", "met", 0, "met"),
        ("03-10", "met", 0, "missed"),
        ("03-11", "missed", 360, "missed"),
    ]


def test_a_backfill_for_a_missed_day_makes_it_met_late(tmp_path):
    location = str(tmp_path / "datasink")
    rules = _rules(tmp_path, '[[rule]]\njob = "load"\ndeadline = "07:00"\n')
    write_spans(location, [_run("load", "2026-03-09 05:00", 10)])
    assert _alert(location, rules, _at("2026-03-10 12:00")) == 0
    backfill = _run("load", "2026-03-11 09:00", 10, run_type="backfill", logical_date="2026-03-10T00:00:00Z")
    write_spans(location, [backfill])
    assert _alert(location, rules, _at("2026-03-11 10:00")) == 0
    assert _verdicts(location, _at("2026-03-11 10:00"))[1] == ("03-10", "met_late", 26 * 60 + 10, "missed")


def test_within_judges_each_run_from_its_logical_date(tmp_path):
    location = str(tmp_path / "datasink")
    rules = _rules(tmp_path, '[[rule]]\njob = "export"\nwithin = "2h"\n')
    write_spans(
        location,
        [
            _run("export", "2026-03-10 00:30", 60, logical_date="2026-03-10T00:00:00Z", run_id="a1"),
            _run("export", "2026-03-11 01:30", 60, logical_date="2026-03-11T00:00:00Z", run_id="b2"),
        ],
    )
    assert _alert(location, rules, _at("2026-03-11 12:00")) == 0
    assert _results(location) == [
        ("export", "within", "03-10 00:00", True, 0),
        ("export", "within", "03-11 00:00", False, 30),
    ]


def test_the_example_rules_file_has_deadlines():
    from pathlib import Path

    rules = load_rules(Path(__file__).parent.parent / "examples" / "alert_rules.toml")
    assert {str(rule.deadline) for rule in rules.rules if rule.deadline} == {"07:00 Europe/Berlin"}
    assert any(rule.within for rule in rules.rules) and any(rule.max_duration for rule in rules.rules)


def test_a_weekly_deadline_is_due_on_its_day_of_the_week_from_monday():
    deadline = parse_deadline("fri 17:00")
    (period,) = deadline.periods(_at("2026-03-09 00:00"), _at("2026-03-16 00:00"))
    assert (period.start, period.deadline, period.end) == (
        _at("2026-03-09 00:00"),
        _at("2026-03-13 17:00"),
        _at("2026-03-16 00:00"),
    )


def test_a_deadline_the_clock_skips_is_due_when_the_clock_shows_it_after_the_jump_and_a_day_may_last_25_hours():
    import dataclasses

    berlin = dataclasses.replace(parse_deadline("02:30"), timezone="Europe/Berlin")
    spring = berlin.period_at(_at("2026-03-29 12:00"))
    assert spring.deadline == _at("2026-03-29 01:30")  # 03:30 CEST: 02:30 does not exist that night
    assert spring.end - spring.start == datetime.timedelta(hours=23)
    autumn = berlin.period_at(_at("2026-10-25 12:00"))
    assert autumn.deadline == _at("2026-10-25 00:30")  # the first 02:30 (CEST) of the two
    assert autumn.end - autumn.start == datetime.timedelta(hours=25)


def test_a_run_that_usually_takes_longer_than_its_within_leaves_is_at_risk_while_running(tmp_path, receiver):
    from job_spans import started as start_of

    location = str(tmp_path / "datasink")
    rules = _rules(tmp_path, '[[rule]]\njob = "export"\nwithin = "2h"\n')
    today = _run("export", "2026-03-11 01:30", 60, logical_date="2026-03-11T00:00:00Z", run_id="b2")
    yesterday = _run("export", "2026-03-10 00:30", 60, logical_date="2026-03-10T00:00:00Z", run_id="a1")
    write_spans(location, [yesterday, start_of(today)])
    assert _alert(location, rules, _at("2026-03-11 01:35"), "--notify", receiver.url) == 0
    (risk,) = [body["title"] + body["message"] for body in receiver.take()]
    assert "job export may miss its SLA within 2h due 2026-03-11 02:00 UTC" in risk
    assert "expected to end 2026-03-11 02:30 UTC" in risk


def test_a_missed_deadline_never_made_up_resolves_once_the_next_period_is_met_and_says_so(tmp_path, receiver):
    location = str(tmp_path / "datasink")
    rules = _rules(tmp_path, f'[[rule]]\njob = "load"\ndeadline = "07:00"\nnotify = ["{receiver.url}"]\n')
    write_spans(location, [_run("load", "2026-03-10 05:00", 10)])
    assert _alert(location, rules, _at("2026-03-11 07:05")) == 0
    assert len(receiver.take()) == 1
    write_spans(location, [_run("load", "2026-03-12 05:00", 10)])
    assert _alert(location, rules, _at("2026-03-12 07:05")) == 0
    (resolved,) = [body["message"] for body in receiver.take()]
    assert "job load met its SLA deadline 07:00 UTC due 2026-03-12 07:00 UTC; the period due 2026-03-11" in resolved
    assert "stays missed" in resolved
