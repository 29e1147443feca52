"""Alerts a team can trust: an evaluation with no target changes no incident, a failed delivery exits 1 saying its
error once, ``--dry-run`` shows each message's text (the example rules included), one clock in a message, and
``alert ack`` / ``alert silence`` honoured by the evaluations and shown in ``alerts_open``.

What the issue asks of the command line runs it as a subprocess (a person's or cron's run of it); the evaluations
around an ``ack`` or ``silence`` run in-process (cheaper). Targets are Apprise ``json://`` URLs of a real HTTP
receiver on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from job_spans import HOUR_NS, MINUTE_NS, job_span, now_ns, write_spans
from network import free_port
from receiver import serving

from otel_datasink import cli, local, semconv
from otel_datasink.alerts.model import age

pytest.importorskip("apprise")

EXAMPLE_RULES = Path(__file__).parent.parent / "examples" / "alert_rules.toml"

receiver = pytest.fixture(serving, name="receiver")


def _stale_location(tmp_path: Path, owners: dict[str, tuple[str, ...]] | None = None) -> tuple[str, datetime.datetime]:
    """A location whose datasets (``orders`` by default; else those of ``owners``: dataset -> its job's owners), SLA
    60 min, were last updated 3 h before the returned instant, each by ``load_<dataset>``."""
    location = str(tmp_path / "datasink")
    n = now_ns() // 1_000_000 * 1_000_000
    spans = []
    for dataset, names in (owners or {"orders": ()}).items():
        span = job_span(
            f"load_{dataset}",
            n - 3 * HOUR_NS - MINUTE_NS,
            n - 3 * HOUR_NS,
            updates=[dict(name=dataset, freshness_sla_minutes=60)],
        )
        if names:
            span = dataclasses.replace(span, attributes={**span.attributes, semconv.JOB_OWNERS: list(names)})
        spans.append(span)
    write_spans(location, spans)
    return location, datetime.datetime.fromtimestamp(n / 1e9, tz=datetime.timezone.utc)


def _alert(location: str, now: datetime.datetime, *flags: str) -> int:
    return cli.main(["alert", "--location", location, "--now", now.isoformat(), *flags])


def _run(location: str, now: datetime.datetime, *words: str) -> subprocess.CompletedProcess[str]:
    """``otel-datasink alert WORDS`` as a subprocess, at ``now`` (``OTEL_DATASINK_ALERT_NOW``)."""
    return subprocess.run(
        [sys.executable, "-m", "otel_datasink.cli", "alert", "--location", location, *words],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OTEL_DATASINK_ALERT_NOW": now.isoformat()},
    )


def _open(location: str) -> list[tuple]:
    with local.connect(location) as con:
        return con.execute(
            "SELECT incident_id, subject, acknowledged_by, acknowledged_until, silenced_by, silenced_until "
            "FROM alerts_open ORDER BY subject"
        ).fetchall()


def test_an_evaluation_with_no_target_changes_no_incident_and_the_next_with_one_pages_nobody_twice(tmp_path, receiver):
    # A person trying `alert` without --notify closed every open incident ("nobody told"); cron's next run with
    # --notify then paged them all again, under new incident ids.
    location, now = _stale_location(tmp_path)
    first = _run(location, now, "--notify", receiver.url)
    assert first.returncode == 0, first.stderr
    assert len(receiver.take()) == 1
    [(incident, *_)] = _open(location)

    trying = _run(location, now + datetime.timedelta(minutes=10))
    assert trying.returncode == 0
    assert trying.stderr.splitlines() == [
        "otel-datasink alert: no target configured (--notify URL, or notify in a rule): "
        "no incident opened, resolved or closed"
    ]
    assert "stale_dataset orders" in trying.stdout  # what holds is still shown
    assert [row[0] for row in _open(location)] == [incident]

    cron = _run(location, now + datetime.timedelta(minutes=20), "--notify", receiver.url)
    assert cron.returncode == 0, cron.stderr
    assert receiver.take() == []  # the same incident, within its suppression: nobody paged twice
    assert [row[0] for row in _open(location)] == [incident]


def test_a_failed_delivery_exits_1_and_says_its_error_once(tmp_path):
    location, now = _stale_location(tmp_path)
    done = _run(location, now, "--notify", f"json://127.0.0.1:{free_port()}/hook")
    assert done.returncode == 1
    said = done.stdout + done.stderr
    assert said.count("Connection refused") == 1 and said.count("A Connection error occurred") == 1, said
    assert "notifications: 0 sent, 1 failed" in done.stdout


def test_ack_holds_reminders_until_its_time_and_shows_in_alerts_open(tmp_path, receiver, capsys):
    location, now = _stale_location(tmp_path)
    assert _alert(location, now, "--notify", receiver.url) == 0
    assert len(receiver.take()) == 1
    [(incident, *_)] = _open(location)

    acked = _run(location, now, "ack", incident, "--until", "5h", "--by", "alice")
    assert acked.returncode == 0, acked.stderr
    assert f"acknowledged {incident} (stale_dataset orders) by alice until" in acked.stdout
    until = now + datetime.timedelta(hours=5)
    assert _open(location) == [(incident, "orders", "alice", until, None, None)]

    capsys.readouterr()
    assert _alert(location, now + datetime.timedelta(hours=4, minutes=1), "--notify", receiver.url) == 0
    assert receiver.take() == []  # its reminder was due (4 h): held
    assert "held: FIRING stale_dataset orders: acknowledged by alice until" in capsys.readouterr().out
    assert _alert(location, now + datetime.timedelta(hours=5, minutes=1), "--notify", receiver.url) == 0
    (reminder,) = receiver.take()  # the acknowledgement is over
    assert "[FIRING] stale_dataset orders" in reminder["title"]

    unknown = _run(location, now, "ack", "0123456789abcdef")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [
        f"otel-datasink alert: no incident '0123456789abcdef' at {location} (its ids: SELECT * FROM alerts_open)"
    ]


def test_a_silence_by_owner_holds_new_incidents_of_the_owners_subjects_until_its_time(tmp_path, receiver, capsys):
    location, now = _stale_location(tmp_path, {"orders": ("team-orders",), "clicks": ("team-web",)})
    silenced = _run(location, now, "silence", "--owner", "team-ord*", "--until", "2h", "--by", "bob")
    assert silenced.returncode == 0, silenced.stderr
    assert "silenced owner 'team-ord*' by bob until" in silenced.stdout

    assert _alert(location, now, "--notify", receiver.url) == 0
    assert [body["title"] for body in receiver.take()] == ["[FIRING] stale_dataset clicks (warning)"]
    assert "held: FIRING stale_dataset orders: silenced by bob until" in capsys.readouterr().out
    until = now + datetime.timedelta(hours=2)
    [clicks, orders] = _open(location)
    assert clicks[1:] == ("clicks", None, None, None, None)
    assert orders[1:] == ("orders", None, None, "bob", until)  # opened, listed, silenced

    assert _alert(location, now + datetime.timedelta(minutes=30), "--notify", receiver.url) == 0
    assert receiver.take() == []
    assert _alert(location, now + datetime.timedelta(hours=2, minutes=1), "--notify", receiver.url) == 0
    (told,) = receiver.take()  # the silence is over: told now, of the incident alerts_open listed
    assert told["title"] == "[FIRING] stale_dataset orders (warning)" and f"Incident: {orders[0]}" in told["message"]


def test_dry_run_of_the_example_rules_prints_each_messages_text_and_contacts_nobody(tmp_path, receiver, capsys):
    # The example's placeholder Slack URL failed the dry run (exit 2): a target is checked for its form only.
    location, now = _stale_location(tmp_path)
    assert (
        _alert(location, now - datetime.timedelta(hours=2, minutes=30), "--rules", str(EXAMPLE_RULES), "--dry-run") == 0
    )
    flags = ("--rules", str(EXAMPLE_RULES), "--notify", receiver.url, "--dry-run")
    capsys.readouterr()
    assert _alert(location, now, *flags) == 1  # an incident is open
    out = capsys.readouterr().out
    message = out.split(f"message to {receiver.url}:\n", 1)[1].splitlines()
    assert message[0] == "    [FIRING] stale_dataset orders (warning)"
    assert message[1].startswith("    dataset orders is stale: data 3 h old, SLA 60 min, late since ")
    assert message[2].startswith("    Since: ") and message[2].endswith(" UTC (2 h ago)")
    assert receiver.take() == []
    assert local.connect(location).execute("SELECT count(*) FROM alerts").fetchone() == (0,)


def test_a_message_tells_every_age_in_one_unit_and_at_one_instant(tmp_path, receiver):
    # It said "late since <date>" then "Since: <now> (0m ago)", and "219 d old" then "315205 min old".
    location, now = _stale_location(tmp_path)
    later = now + datetime.timedelta(days=219)
    assert _alert(location, later, "--notify", receiver.url) == 0
    (body,) = receiver.take()
    lines = body["message"].splitlines()
    since = (now - datetime.timedelta(hours=2)).strftime("%Y-%m-%d %H:%M UTC")
    assert (
        lines[0]
        == f"dataset orders is stale: data 219 d 3 h old, SLA 60 min, late since {since} (last updated by load_orders)"
    )
    assert lines[1] == f"Since: {since} (219 d 2 h ago)"
    assert lines[2] == "How bad: data 219 d 3 h old (SLA 60 min)"


@pytest.mark.parametrize(
    ("delta", "said"),
    [
        (datetime.timedelta(seconds=20), "0 min"),
        (datetime.timedelta(minutes=119), "119 min"),
        (datetime.timedelta(minutes=185), "3 h 5 min"),
        (datetime.timedelta(hours=47), "47 h"),
        (datetime.timedelta(minutes=315205), "218 d 21 h"),
        (-datetime.timedelta(minutes=5), "0 min"),
    ],
)
def test_age_says_a_duration_in_its_largest_sensible_unit(delta, said):
    assert age(delta) == said
    assert age(delta.total_seconds() / 60) == said
