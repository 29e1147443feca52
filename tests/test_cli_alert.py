"""``otel-datasink alert`` end to end on a local folder: Apprise ``json://`` to an HTTP receiver on 127.0.0.1,
incidents across evaluations at chosen instants (``--now``), ``--dry-run`` as a CI gate, ``--watch`` stopped by
SIGTERM or Ctrl-C, and the gauges read back from the SDK's in-memory reader."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from job_spans import HOUR_NS, MINUTE_NS, job_span, now_ns, write_spans
from network import free_port
from webhooks import Receiver

from otel_datasink import catalog, cli, local
from otel_datasink.alerts import conditions, gauges
from otel_datasink.alerts.rules import Rules

pytest.importorskip("apprise")


def _serving() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


receiver = pytest.fixture(_serving, name="receiver")
second_receiver = pytest.fixture(_serving, name="second_receiver")


@pytest.fixture
def stale(tmp_path):
    """A location whose dataset ``orders`` (SLA 60 min) was last updated 3 h before the returned instant."""
    location = str(tmp_path / "datasink")
    n = now_ns() // 1_000_000 * 1_000_000
    write_spans(
        location,
        [
            job_span(
                "load_orders",
                n - 3 * HOUR_NS - MINUTE_NS,
                n - 3 * HOUR_NS,
                updates=[dict(name="orders", freshness_sla_minutes=60)],
            )
        ],
    )
    return location, datetime.datetime.fromtimestamp(n / 1e9, tz=datetime.timezone.utc)


def _alert(location, now, *flags):
    return cli.main(["alert", "--location", location, "--now", now.isoformat(), *flags])


def _texts(bodies):
    return [body["title"] + "\n" + body["message"] for body in bodies]


def test_one_notification_none_within_suppression_a_reminder_after_it_resolved_when_fresh(stale, receiver, capsys):
    location, now = stale
    assert _alert(location, now, "--notify", receiver.url) == 0
    (fired,) = _texts(receiver.take())
    assert "orders" in fired and "SLA 60 min" in fired
    assert "1 open incident(s); notifications: 1 sent, 0 failed" in capsys.readouterr().out

    assert _alert(location, now + datetime.timedelta(hours=1), "--notify", receiver.url) == 0
    assert receiver.take() == []  # still open, within the 4 h suppression

    assert _alert(location, now + datetime.timedelta(hours=4, minutes=1), "--notify", receiver.url) == 0
    assert len(receiver.take()) == 1  # the reminder

    later = now + datetime.timedelta(hours=5)
    n = int(later.timestamp() * 1e9)
    write_spans(
        location,
        [
            job_span(
                "load_orders", n - 2 * MINUTE_NS, n - MINUTE_NS, updates=[dict(name="orders", freshness_sla_minutes=60)]
            )
        ],
    )
    assert _alert(location, later, "--notify", receiver.url) == 0
    (resolved,) = _texts(receiver.take())
    assert "resolved" in resolved.lower()
    con = local.connect(location)
    states = con.execute("SELECT state, delivered FROM alerts ORDER BY event_time").fetchall()
    assert states == [("FIRING", True), ("FIRING", True), ("RESOLVED", True)]
    assert con.execute("SELECT count(*) FROM alerts_open").fetchone() == (0,)


def test_a_refusing_target_is_retried_and_never_stops_the_other(stale, receiver):
    location, now = stale
    down = Receiver()
    down.refuse = True
    try:
        targets = ["--notify", receiver.url, "--notify", down.url]
        assert _alert(location, now, *targets) == 0
        assert len(receiver.take()) == 1 and down.take() == []
        down.refuse = False
        assert _alert(location, now + datetime.timedelta(minutes=5), *targets) == 0
        assert receiver.take() == [] and len(down.take()) == 1  # retried where it failed, only there
    finally:
        down.server.shutdown()
        down.server.server_close()


def test_a_target_that_stays_down_is_retried_after_a_growing_wait_not_at_every_evaluation(stale, receiver, capsys):
    location, now = stale
    down = Receiver()
    down.refuse = True
    try:
        targets = ["--notify", receiver.url, "--notify", down.url]

        def evaluate_at(seconds: int) -> tuple[int, str]:
            """(requests ``down`` refused so far, the count line) after an evaluation ``seconds`` after ``now``."""
            assert _alert(location, now + datetime.timedelta(seconds=seconds), *targets) == 0
            return down.refused, capsys.readouterr().out.splitlines()[-1].split("notifications: ")[1]

        assert evaluate_at(0) == (1, "1 sent, 1 failed")
        assert evaluate_at(30) == (1, "0 sent, 0 failed")  # within a minute of its failure: not tried
        assert evaluate_at(61) == (2, "0 sent, 1 failed")
        assert evaluate_at(150) == (2, "0 sent, 0 failed")  # two failures: two minutes from the last
        down.refuse = False
        assert evaluate_at(182) == (2, "1 sent, 0 failed")
        assert len(receiver.take()) == 1 and len(down.take()) == 1
    finally:
        down.server.shutdown()
        down.server.server_close()


def test_deliver_sends_nothing_once_the_evaluation_lost_its_lock(receiver):
    from otel_datasink.alerts.engine import deliver
    from otel_datasink.alerts.model import Notification, Send

    now = datetime.datetime.now(datetime.timezone.utc)
    send = Send(Notification("3f2a9c", "failing_job", "etl", "critical", "FIRING", now, "etl failed"), receiver.url)
    assert deliver([send], lambda s: "incident", 5, holding=lambda: False) == []
    assert receiver.take() == []
    assert deliver([send], lambda s: "incident", 5, holding=lambda: True) == [(send, True, None)]
    assert len(receiver.take()) == 1


def test_an_evaluation_while_another_holds_the_lock_skips_its_round(stale, receiver, capsys):
    from otel_datasink.alerts.engine import evaluation_lock

    location, now = stale
    with evaluation_lock(location):
        assert _alert(location, now, "--notify", receiver.url) == 0
    assert "skipped" in capsys.readouterr().err and receiver.take() == []
    assert _alert(location, now, "--notify", receiver.url) == 0
    assert len(receiver.take()) == 1


def test_digest_bundles_a_targets_notifications_of_one_evaluation(tmp_path, receiver):
    location = str(tmp_path / "datasink")
    n = now_ns() // 1_000_000 * 1_000_000
    write_spans(
        location,
        [
            job_span("a", n - 3 * HOUR_NS, n - 3 * HOUR_NS, failed=True),
            job_span("b", n - 2 * HOUR_NS, n - 2 * HOUR_NS, failed=True),
        ],
    )
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\ngroup = "digest"\n')
    now = datetime.datetime.fromtimestamp(n / 1e9, tz=datetime.timezone.utc)
    assert _alert(location, now, "--rules", str(rules), "--notify", receiver.url) == 0
    (digest,) = _texts(receiver.take())
    assert "job a" in digest and "job b" in digest


def test_dry_run_prints_sends_and_writes_nothing_and_exits_1_when_an_incident_is_open(stale, receiver, capsys):
    location, now = stale
    assert _alert(location, now, "--notify", receiver.url, "--dry-run") == 1
    out = capsys.readouterr().out
    assert "WARNING stale_dataset orders: dataset orders is stale" in out
    assert "would send FIRING stale_dataset orders to json://127.0.0.1" in out
    assert receiver.take() == []
    assert local.connect(location).execute("SELECT count(*) FROM alerts").fetchone() == (0,)
    # Before the data went stale, the gate passes.
    assert _alert(location, now - datetime.timedelta(hours=2, minutes=30), "--dry-run") == 0


def test_a_bad_rules_file_or_template_exits_2_with_one_line(stale, tmp_path, capsys):
    location, now = stale
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nsuppress = "soon"\n')
    assert _alert(location, now, "--rules", str(rules)) == 2
    assert f"otel-datasink alert: rules file {rules}, line 2: rule[1].suppress: must be a duration" in (
        capsys.readouterr().err
    )
    assert _alert(location, now, "--trace-url", "https://x/{traceid}") == 2
    assert "--trace-url: unknown field {traceid}" in capsys.readouterr().err


def test_a_mistyped_target_exits_2_before_any_evaluation(stale, capsys):
    location, now = stale
    assert _alert(location, now, "--notify", "slak://token/#alerts") == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("otel-datasink alert: ")
    assert not list(Path(location).glob("alerts/*/*.parquet"))  # nothing evaluated, nothing recorded


def test_a_location_with_no_tables_exits_2_unless_allowed(tmp_path, capsys):
    now = datetime.datetime.now(datetime.timezone.utc)
    assert _alert(str(tmp_path / "nothing"), now) == 2
    assert "--allow-empty" in capsys.readouterr().err
    assert _alert(str(tmp_path / "nothing"), now, "--allow-empty", "--dry-run") == 0


def _watch_until_evaluated(location, *flags, env=None, meanwhile=None, stop=signal.SIGTERM):
    """Runs ``alert --watch`` until its first evaluation's count line, calls ``meanwhile()``, then sends ``stop``;
    (status, stdout, stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "otel_datasink.cli", "alert", "--location", location, "--watch", "0.2", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    try:
        lines = []
        for line in process.stdout:  # wait on the output: the first evaluation's count line
            lines.append(line)
            if "open incident(s)" in line:
                break
        if meanwhile is not None:
            meanwhile()
        process.send_signal(stop)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    return process.returncode, "".join(lines) + out, err


def test_watch_stops_on_sigterm_after_its_evaluation_with_status_0(stale):
    location, _ = stale
    status, out, err = _watch_until_evaluated(location, "--dry-run")
    assert status == 0, err
    assert "stale_dataset orders" in out and out.rstrip().endswith("stopped")


def test_watch_on_ctrl_c_stops_after_its_evaluation_then_exits_130_saying_so(stale):
    # It exited 0, as on SIGTERM: Ctrl-C's 130 is what a shell or script expects of an interrupted command.
    location, _ = stale
    status, out, err = _watch_until_evaluated(location, "--dry-run", stop=signal.SIGINT)
    assert status == 130, err
    assert "stale_dataset orders" in out and out.rstrip().endswith("stopped")
    [line] = err.splitlines()
    assert re.fullmatch(r"otel-datasink alert: interrupted; stopped after \d+ evaluation\(s\), none cut short", line)


def test_watch_with_view_parameters_that_do_not_hold_together_fails_at_once_in_one_line(stale):
    # They were read at each evaluation: the loop said "evaluation failed: ..." every --watch seconds, for ever.
    location, _ = stale
    done = subprocess.run(
        [sys.executable, "-m", "otel_datasink.cli", "alert", "--location", location, "--watch", "0.2", "--dry-run"]
        + ["--window-days", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "otel-datasink alert: window_days must cover anomaly_lookback_days + anomaly_baseline_days"
    ]
    assert done.stdout == ""


def test_watch_exports_the_gauges_with_the_exporter_otel_metrics_exporter_names(stale):
    location, _ = stale
    status, out, err = _watch_until_evaluated(location, "--dry-run", env={"OTEL_METRICS_EXPORTER": "console"})
    assert status == 0, err
    # The console exporter prints the last collection at shutdown, after "stopped".
    exported = out.split("stopped", 1)[1]
    for name in ("datasink.dataset.freshness", "datasink.dataset.stale", "datasink.alerts.open"):
        assert f'"name": "{name}"' in exported


def test_watch_serves_the_gauges_on_a_prometheus_scrape_port(stale):
    pytest.importorskip("opentelemetry.exporter.prometheus")
    from prometheus_client.parser import text_string_to_metric_families

    location, _ = stale
    port = free_port()
    scraped = {}

    def scrape():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            for family in text_string_to_metric_families(response.read().decode()):
                for sample in family.samples:
                    scraped[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    env = {
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
    }
    status, _, err = _watch_until_evaluated(location, "--dry-run", env=env, meanwhile=scrape)
    assert status == 0, err
    freshness = {name: value for (name, labels), value in scraped.items() if ("dataset", "orders") in labels}
    assert any(name.startswith("datasink_dataset_freshness") and value >= 180 for name, value in freshness.items())
    assert any(name.startswith("datasink_dataset_stale") and value == 1 for name, value in freshness.items())
    assert any(name.startswith("datasink_alerts_open") for name, _ in scraped)


def test_the_gauges_report_the_last_evaluation(stale):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    location, now = stale
    reader = InMemoryMetricReader()
    health = gauges.HealthGauges(MeterProvider(metric_readers=[reader]))
    con = local.connect(location)
    catalog.pin_time(con, now, None)
    found = conditions.evaluate(con, Rules(), now)
    health.update(gauges.read_health(con, found))
    points = {}
    for resource_metrics in reader.get_metrics_data().resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points[(metric.name, tuple(sorted(point.attributes.items())))] = point.value
    assert points[("datasink.dataset.freshness", (("dataset", "orders"),))] == 180
    assert points[("datasink.dataset.stale", (("dataset", "orders"),))] == 1
    assert points[("datasink.runs.hung", ())] == 0
    assert points[("datasink.alerts.open", (("kind", "stale_dataset"),))] == 1
    assert points[("datasink.alerts.open", (("kind", "failing_job"),))] == 0


def _open_incidents(location):
    with local.connect(location) as con:
        return con.execute("SELECT kind, subject FROM alerts_open").fetchall()


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param('[[rule]]\ndataset = "refunds"\nowners = ["@payments"]\n', id="rule-removed"),
        pytest.param('[[rule]]\ndataset = "orders"\nenabled = false\n', id="rule-disabled"),
    ],
)
def test_an_incident_whose_rule_went_away_closes_tells_nobody_and_reopens_when_routed_again(
    stale, receiver, second_receiver, tmp_path, capsys, changed
):
    location, now = stale
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\ndataset = "orders"\nnotify = ["{receiver.url}"]\n')
    assert _alert(location, now, "--rules", str(rules)) == 0
    assert len(receiver.take()) == 1 and _open_incidents(location) == [("stale_dataset", "orders")]
    capsys.readouterr()

    # The rule routing orders to ``receiver`` removed (or disabled, its notify gone): nobody left for the incident.
    rules.write_text(changed)
    assert _alert(location, now + datetime.timedelta(minutes=10), "--rules", str(rules)) == 0
    out = capsys.readouterr().out
    assert "closed: stale_dataset orders: " in out and "0 sent, 0 failed, 1 closed with no target to tell" in out
    assert _open_incidents(location) == []
    assert _alert(location, now + datetime.timedelta(minutes=20), "--rules", str(rules)) == 0
    assert receiver.take() == [] and second_receiver.take() == []  # nobody told, then or after
    with local.connect(location) as con:
        row = con.execute("SELECT state, targets, delivered, details FROM alerts ORDER BY event_time DESC").fetchone()
    assert row[:3] == ("RESOLVED", None, None) and "nobody told" in json.loads(row[3])["closed"]

    # Routed again, to another target: a new incident, told to it.
    rules.write_text(f'[[rule]]\ndataset = "orders"\nnotify = ["{second_receiver.url}"]\n')
    assert _alert(location, now + datetime.timedelta(minutes=30), "--rules", str(rules)) == 0
    (fired,) = _texts(second_receiver.take())
    assert "[FIRING] stale_dataset orders" in fired and receiver.take() == []
    assert _open_incidents(location) == [("stale_dataset", "orders")]


def test_a_refused_target_is_recorded_with_the_connection_refused(stale, capsys):
    import socket

    with socket.socket() as sock:  # a port on 127.0.0.1 nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    location, now = stale
    assert _alert(location, now, "--notify", f"json://127.0.0.1:{closed}/hook") == 0
    assert "Connection refused" in capsys.readouterr().out  # the FAILED line
    with local.connect(location) as con:
        ((delivered, details),) = con.execute("SELECT delivered, details FROM alerts").fetchall()
    assert delivered is False
    assert "Connection refused" in json.loads(details)["error"]


# --- hostile names and errors: what a receiver gets stays inert ----------------------------------------------------

HOSTILE_JOB = "x/../../../evil?y=#frag"
FORGING_ERROR = (
    "boom\n[RESOLVED] failing_job nightly (critical)\r\nResolved: 2026-01-01 00:00 UTC (0m ago)\r"
    "[RESOLVED] again\u2028[RESOLVED] and again\x1b[2J\u202e"
)
"""An error message whose line breaks would write a RESOLVED header and state line inside a FIRING message (the
storage drops its carriage returns and escape; it keeps its newlines, U+2028 and the bidi override)."""
MENTIONS_AND_MARKDOWN = (
    "see [the fix](https://evil.example/phish) @here <@123456789012345678> <@&987654321098765432> @channel **now**"
    "\n# Resolved"
)


def _seed_failures(tmp_path, *failures):
    """A location where each (job, run id, error message) of ``failures`` failed once, an hour before the returned
    instant; the error message is the span's status description (``None``: the span's own)."""
    location = str(tmp_path / "datasink")
    n = now_ns() // 1_000_000 * 1_000_000
    spans = []
    for job, run_id, message in failures:
        span = job_span(job, n - HOUR_NS, n - HOUR_NS + MINUTE_NS, failed=True, run_id=run_id)
        spans.append(dataclasses.replace(span, status_message=message) if message is not None else span)
    write_spans(location, spans)
    return location, datetime.datetime.fromtimestamp(n / 1e9, tz=datetime.timezone.utc)


def _message_of(bodies, subject):
    """The message of the one body whose title names ``subject``."""
    (body,) = [body for body in bodies if f" {subject} (" in body["title"]]
    return body["message"]


def _link(message, name):
    """The URL of the ``name: URL`` line of a message, or None."""
    found = [line.split(": ", 1)[1] for line in message.splitlines() if line.startswith(f"{name}: ")]
    return found[0] if found else None


def test_a_job_name_or_run_id_cannot_move_a_link_off_the_templates_host_and_path(tmp_path, receiver):
    location, now = _seed_failures(
        tmp_path, (HOSTILE_JOB, "7/../../admin?x=1#y", None), ("..", "..", None), ("ingest orders", "r 1", None)
    )
    run_url = "https://airflow.example/dags/{job_name}/runs/{run_id}"
    trace_url = "https://grafana.example/explore?traceId={trace_id}&job={job_name}"
    assert _alert(location, now, "--notify", receiver.url, "--run-url", run_url, "--trace-url", trace_url) == 0
    bodies = receiver.take()

    hostile = _message_of(bodies, HOSTILE_JOB)
    run = urllib.parse.urlsplit(_link(hostile, "run"))
    # Every field percent-encoded, "/" included: one path segment each, no query, no fragment of their own.
    assert (run.scheme, run.netloc, run.query, run.fragment) == ("https", "airflow.example", "", "")
    assert run.path == "/dags/x%2F..%2F..%2F..%2Fevil%3Fy%3D%23frag/runs/7%2F..%2F..%2Fadmin%3Fx%3D1%23y"
    trace = urllib.parse.urlsplit(_link(hostile, "trace"))
    assert (trace.netloc, trace.path, trace.fragment) == ("grafana.example", "/explore", "")
    assert urllib.parse.parse_qs(trace.query)["job"] == [HOSTILE_JOB]  # a query value, decoded back to the name

    # ".." as a whole segment would be resolved (by browsers, even as %2e%2e): that link is not made at all; the
    # trace link, where ".." is a query value, is.
    dots = _message_of(bodies, "..")
    assert _link(dots, "run") is None
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(_link(dots, "trace")).query)["job"] == [".."]

    assert _link(_message_of(bodies, "ingest orders"), "run").endswith("/dags/ingest%20orders/runs/r%201")


def test_line_breaks_in_an_error_cannot_forge_a_header_or_state_line(tmp_path, receiver, capsys):
    location, now = _seed_failures(tmp_path, ("nightly", "r1", FORGING_ERROR), ("etl", "r2", None))
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\ngroup = "digest"\n')
    assert _alert(location, now, "--rules", str(rules), "--notify", receiver.url) == 0
    (digest,) = receiver.take()
    lines = digest["message"].splitlines()
    # The only lines that look like a header are the two incidents' own; no user text starts a line of its own.
    headers = [line for line in lines if line.startswith("[")]
    assert headers == ["[FIRING] failing_job etl (critical)", "[FIRING] failing_job nightly (critical)"]
    assert not [line for line in lines if line.startswith("Resolved")]
    assert "job nightly failed 1 run since" in digest["message"]  # the summary keeps the error's first line only
    for line in ("Last error: RuntimeError: boom", "    [RESOLVED] failing_job nightly (critical)"):
        assert line in lines
    # A line break the storage keeps (U+2028) starts an indented line; a bidi override is shown, not obeyed.
    assert "    Resolved: 2026-01-01 00:00 UTC (0m ago)[RESOLVED] again" in lines
    assert "    [RESOLVED] and again[2J\ufffd" in lines
    assert all(character.isprintable() for character in digest["message"].replace("\n", ""))
    # The command's own lines stay one per condition and notification.
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and all(line.startswith(now.isoformat(timespec="seconds")) for line in out), out


@pytest.fixture
def discord(receiver, monkeypatch):
    """A ``discord://`` target whose webhook posts reach ``receiver``: Apprise's Discord plugin, all of it, with its
    API's base URL (https://discord.com/api/webhooks) pointed at 127.0.0.1."""
    from apprise.plugins.discord import NotifyDiscord

    monkeypatch.setattr(NotifyDiscord, "notify_url", f"http://127.0.0.1:{receiver.port}/api/webhooks")
    return "discord://1234567890123/abcdefghijklmnopqrstuvwxyzABCDEF", "content"


@pytest.fixture
def mattermost(receiver):
    """A Mattermost webhook on ``receiver`` (it renders Markdown and acts on @channel, @all, @here)."""
    return f"mmost://127.0.0.1:{receiver.port}/yobjmukpaw3r3urc5h6i369yima", "text"


@pytest.mark.parametrize("platform", ["discord", "mattermost"])
def test_a_markdown_chat_gets_user_text_with_mentions_defused_and_markdown_inert(tmp_path, receiver, platform, request):
    markdown = pytest.importorskip("markdown")  # Apprise's own dependency: a real renderer of what was sent
    target, field = request.getfixturevalue(platform)
    job = "etl @everyone [click](https://evil.example/)"
    location, now = _seed_failures(tmp_path, (job, "r1", MENTIONS_AND_MARKDOWN))
    assert _alert(location, now, "--notify", target, "--run-url", "https://ci.example/{job_name}") == 0
    (body,) = receiver.take()
    text = body[field]
    for mention in ("@everyone", "@here", "@channel", "<@1", "<@&"):
        assert mention not in text, mention
    html = markdown.markdown(text)
    for tag in ("<a ", "<strong>", "<h1>"):
        assert tag not in html, html
    # What the reader sees is the text as it was (Markdown escapes are not shown, the zero-width space not seen).
    shown = re.sub(r"\\(.)", r"\1", text).replace("\u200b", "")
    assert f"failing_job {job} (critical)" in shown
    assert "see [the fix](https://evil.example/phish) @here <@123456789012345678>" in shown
    # Our own link stays a plain URL, its field percent-encoded.
    assert "run: https://ci.example/etl%20%40everyone%20%5Bclick%5D%28https%3A%2F%2Fevil.example%2F%29" in text


@pytest.fixture
def slack(receiver, monkeypatch):
    """A ``slack://`` webhook target whose posts reach ``receiver`` (Apprise's Slack plugin, its base URL
    https://hooks.slack.com/services pointed at 127.0.0.1; the receiver answers ``ok`` as Slack does)."""
    from apprise.plugins.slack import NotifySlack

    monkeypatch.setattr(NotifySlack, "webhook_url", f"http://127.0.0.1:{receiver.port}/services")
    receiver.answer = b"ok"
    return "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"


def test_slack_gets_plain_text_that_its_plugin_escapes_and_no_forged_line(tmp_path, receiver, slack):
    location, now = _seed_failures(
        tmp_path, ("etl <!here>", "r1", "<@U0123ABC> [x](https://evil.example/)\n" + FORGING_ERROR)
    )
    assert _alert(location, now, "--notify", slack) == 0
    ((attachment,),) = [body["attachments"] for body in receiver.take()]
    text = attachment["text"]
    # Slack's own escaping (& < >) defuses its mentions and links; nothing of ours is added to what it shows.
    assert "&lt;@U0123ABC&gt; [x](https://evil.example/)" in text and "<@U0" not in text and "<!here>" not in text
    assert "\\[" not in text and "\u200b" not in text
    assert not [line for line in text.splitlines() if line.startswith(("[", "Resolved"))]
