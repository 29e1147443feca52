"""Delivery of alert notifications, to real receivers on 127.0.0.1: Apprise (its ``json://`` and Mattermost's
Slack-shaped webhook pointed at a local HTTP server) and a real Prometheus Alertmanager (Debian's package)."""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import json
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from alertmanager import Alertmanager
from alertmanager import binary as alertmanager_binary
from alertmanager import running as running_alertmanager
from job_spans import HOUR_NS, MINUTE_NS, job_span, now_ns, write_spans

from otel_datasink import cli
from otel_datasink.alerts.delivery import check_target, how_bad, last_error, redact, send, wants_every_evaluation
from otel_datasink.alerts.model import FIRING, RESOLVED, DeliveryError, Notification

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
TRACEBACK = "\n".join(
    ["Traceback (most recent call last):", '  File "jobs/ingest.py", line 42, in run', "    load(batch)"]
    + [f'  File "lib/load.py", line {n}, in load' for n in range(30)]
    + ["KeyError: 'customer_id'"]
)


def notification(state: str = FIRING, subject: str = "orders", **changes: object) -> Notification:
    """A stale dataset notification, as incidents make them."""
    fields: dict[str, object] = {
        "incident_id": "3f2a9c",
        "kind": "stale_dataset",
        "subject": subject,
        "severity": "critical",
        "state": state,
        "opened_at": NOW - datetime.timedelta(hours=2, minutes=5),
        "summary": f"{subject} is 185 min old, SLA 60 min",
        "details": {"freshness_minutes": 185.0, "freshness_sla_minutes": 60, "last_error_message": TRACEBACK},
        "owners": ("@data-eng", "ana@example.com"),
        "links": {"trace": "https://grafana.example/explore?traceId=abc123"},
        "resolved_at": NOW if state == RESOLVED else None,
    }
    fields.update(changes)
    return Notification(**fields)  # type: ignore[arg-type]


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 keeping what it was posted; answers ``status``."""

    port: int
    status: int = 200
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def url(self, scheme: str, path: str = "hook") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{path}"

    def json_bodies(self) -> list[dict[str, object]]:
        return [json.loads(body) for _, _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A :class:`Receiver` serving in a thread for the test."""
    state = Receiver(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.requests.append((self.path, dict(self.headers), self.rfile.read(length)))
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Apprise -----------------------------------------------------------------------------------------------------


def test_json_webhook_gets_title_subject_owners_and_the_error_lines(receiver: Receiver) -> None:
    send(receiver.url("json"), [notification()], timeout=5, now=NOW)  # the instant every age is at
    ((path, headers, _),) = receiver.requests
    (message,) = receiver.json_bodies()
    assert path == "/hook" and headers["Content-Type"].startswith("application/json")
    assert message["title"] == "[FIRING] stale_dataset orders (critical)"
    text = str(message["message"])
    lines = text.splitlines()
    assert lines[0] == "orders is 185 min old, SLA 60 min"
    assert "Since: " in text and "(2 h 5 min ago)" in text
    assert "How bad: data 3 h 5 min old (SLA 60 min)" in lines
    # The error keeps its first and last lines, as lines, and says how many it left out.
    assert "Last error: Traceback (most recent call last):" in lines
    assert '      File "jobs/ingest.py", line 42, in run' in lines
    assert "    … (22 lines left out)" in lines
    assert '      File "lib/load.py", line 29, in load' in lines
    assert lines[lines.index("    KeyError: 'customer_id'") + 1].startswith("Owners: ")
    assert "Owners: @data-eng, ana@example.com" in lines
    assert "trace: https://grafana.example/explore?traceId=abc123" in lines


def test_several_notifications_make_one_digest(receiver: Receiver) -> None:
    batch = [notification(subject="orders"), notification(subject="customers"), notification(RESOLVED, "refunds")]
    send(receiver.url("json"), batch, timeout=5)
    (message,) = receiver.json_bodies()
    assert message["title"] == "[otel-datasink] 3 alerts: 2 firing, 1 resolved"
    text = str(message["message"])
    for line in (
        "[FIRING] stale_dataset orders (critical)",
        "[FIRING] stale_dataset customers (critical)",
        "[RESOLVED] stale_dataset refunds (critical)",
    ):
        assert line in text.splitlines()


def test_a_reminder_and_a_resolved_say_so(receiver: Receiver) -> None:
    send(receiver.url("json"), [notification(reminder=True)], timeout=5)
    send(receiver.url("json"), [notification(RESOLVED)], timeout=5)
    reminder, resolved = receiver.json_bodies()
    assert reminder["title"] == "[FIRING] stale_dataset orders (critical) reminder"
    assert resolved["title"] == "[RESOLVED] stale_dataset orders (critical)"
    assert "Resolved: " in str(resolved["message"])


def test_a_resolved_closed_for_another_reason_than_its_condition_says_why(receiver: Receiver) -> None:
    from otel_datasink.alerts.incidents import UNROUTED

    closed = notification(RESOLVED)
    closed = dataclasses.replace(closed, details={**closed.details, "closed": UNROUTED})
    send(receiver.url("json"), [closed], timeout=5)
    (body,) = receiver.json_bodies()
    assert f"Closed: {UNROUTED}" in str(body["message"])


def test_a_slack_shaped_webhook_gets_the_text(receiver: Receiver) -> None:
    # Mattermost's incoming webhooks are Slack's ({"text": ...} to /hooks/TOKEN); Apprise lets them be local.
    token = "yobjmukpaw3r3urc5h6i369yima"
    send(f"mmost://127.0.0.1:{receiver.port}/{token}", [notification()], timeout=5)
    ((path, _, _),) = receiver.requests
    (message,) = receiver.json_bodies()
    assert path == f"/hooks/{token}"
    text = str(message["text"])
    assert "[FIRING] stale_dataset orders (critical)" in text
    assert "Owners: @data-eng, ana@example.com" in text  # the rules' owners: mentions meant as such
    # Mattermost renders Markdown: the error's Markdown syntax is escaped, shown as it was.
    assert "KeyError: 'customer\\_id'" in text
    assert 'File "lib/load\\.py", line 10, in load' not in text  # left out: the middle of the traceback
    assert '    File "jobs/ingest\\.py", line 42, in run' in text


def test_a_receiver_answering_500_is_a_one_line_delivery_error(receiver: Receiver) -> None:
    receiver.status = 500
    with pytest.raises(DeliveryError) as caught:
        send(receiver.url("json", "hook?token=sekrit12345"), [notification()], timeout=5)
    cause = str(caught.value)
    assert "\n" not in cause and "500" in cause, cause
    assert "sekrit12345" not in cause


def test_a_closed_port_is_a_delivery_error_within_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        send(f"json://127.0.0.1:{closed_port()}/hook", [notification()], timeout=3)
    assert time.monotonic() - started < 3.5
    cause = str(caught.value)
    assert "\n" not in cause and cause, cause


def test_a_closed_port_says_the_connection_was_refused_with_the_targets_secrets_masked(caplog) -> None:
    # Apprise warns in general words ("A Connection error occurred ...") and logs the exception at DEBUG only.
    apprise_logger = logging.getLogger("apprise")
    level, filters = apprise_logger.level, list(apprise_logger.filters)
    with pytest.raises(DeliveryError) as caught:
        send(f"json://ana:sekrit12345@127.0.0.1:{closed_port()}/hook/{'x1' * 12}", [notification()], timeout=3)
    cause = str(caught.value)
    assert "Connection refused" in cause and "A Connection error occurred" in cause, cause
    assert "sekrit12345" not in cause and "x1" * 12 not in cause and "\n" not in cause
    # Apprise's records of the delivery reached the delivery only, its warnings too: the DeliveryError says them, once
    # (they were logged as well, and the command's FAILED line said them again); the logger is left as it was.
    assert "A Connection error occurred" not in caplog.text and "Socket Exception" not in caplog.text
    assert (apprise_logger.level, apprise_logger.filters) == (level, filters)


def test_a_receiver_that_never_answers_is_given_up_after_the_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never reads nor answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        started = time.monotonic()
        with pytest.raises(DeliveryError) as caught:
            send(f"json://127.0.0.1:{listener.getsockname()[1]}/hook", [notification()], timeout=1.5)
        assert time.monotonic() - started < 2.5
    assert "\n" not in str(caught.value)


def test_an_unknown_scheme_is_a_delivery_error() -> None:
    with pytest.raises(DeliveryError, match="Apprise URL"):
        send("nosuchservice://x/y", [notification()], timeout=2)


@pytest.mark.parametrize(
    ("target", "redacted"),
    [
        (
            "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/#alerts",
            "slack://***/***/***/#alerts",
        ),
        (
            "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7",
            "https://hooks.slack.com/services/***/***/***",
        ),
        ("discord://1234567890123/abcdefghijklmnopqrstuvwxyzABCDEF", "discord://***/***"),
        (
            "https://discord.com/api/webhooks/1234567890123/abcdefghijklmnopqrstuvwxyzABCDEF",
            "https://discord.com/api/webhooks/***/***",
        ),
        (
            "json://user:s3cret@127.0.0.1:8080/notify?token=abc&format=text",
            "json://user:***@127.0.0.1:8080/notify?token=***&format=text",
        ),
        ("mmost://chat.example.com/yobjmukpaw3r3urc5h6i369yima", "mmost://chat.example.com/***"),
        (
            "mailto://ops:pass@mail.example.com?to=ops@example.com",
            "mailto://ops:***@mail.example.com?to=ops@example.com",
        ),
        ("pagerduty://integrationkey1234567890@apikey1234567890", "pagerduty://***@***"),
        ("alertmanagers://admin:pw@am.example.com?token=xyz", "alertmanagers://admin:***@am.example.com?token=***"),
        ("alertmanager://127.0.0.1:9093", "alertmanager://127.0.0.1:9093"),
    ],
)
def test_redact_masks_tokens_and_passwords(target: str, redacted: str) -> None:
    assert redact(target) == redacted


def test_only_alertmanager_wants_every_evaluation() -> None:
    assert wants_every_evaluation("alertmanager://127.0.0.1:9093")
    assert wants_every_evaluation("alertmanagers://am.example.com/prefix")
    assert wants_every_evaluation("http://am.example.com:9093/api/v2/alerts")
    assert not wants_every_evaluation("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7")
    assert not wants_every_evaluation("json://127.0.0.1:8080/hook")


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        (
            "slak://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7",
            r"^slak://\*\*\*/\*\*\*/\*\*\*: not a usable Apprise URL \(",
        ),
        ("mmost://127.0.0.1", "^mmost://127.0.0.1: not a usable Apprise URL"),
        ("alertmanager://", "needs a host"),
        ("alertmanager://127.0.0.1:99999", "not a port number"),
        ("alertmanager://127.0.0.1?every=soon", "every='soon' is not a duration"),
    ],
)
def test_check_target_refuses_what_cannot_be_delivered_to(target: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        check_target(target)
    assert "\n" not in str(caught.value) and "TIiajkdnlazkcOXrIdevi7" not in str(caught.value)


def test_check_target_takes_what_can() -> None:
    for target in (
        "json://127.0.0.1:8080/hook",
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7",
        "alertmanager://am",
    ):
        check_target(target)


def test_without_apprise_alertmanager_works_and_an_apprise_url_says_what_to_install(
    alertmanager_or_none: Alertmanager | None,
) -> None:
    # Importing delivery costs no Apprise; only an Apprise URL needs it, and says which extra brings it.
    target = alertmanager_or_none.target if alertmanager_or_none else None
    code = f"""
        import sys
        sys.modules["apprise"] = None  # "import apprise" raises ModuleNotFoundError, as if not installed
        import datetime
        from otel_datasink.alerts.delivery import check_target, send
        from otel_datasink.alerts.model import Notification
        now = datetime.datetime.now(datetime.timezone.utc)
        if {target!r}:
            send({target!r}, [Notification("1", "hung_run", "nightly", "warning", "FIRING", now, "hung")], timeout=5)
        try:
            send("json://127.0.0.1:9/hook", [Notification("1", "hung_run", "x", "info", "FIRING", now, "x")])
        except Exception as error:
            print(f"{{type(error).__name__}}: {{error}}")
        try:
            check_target("json://127.0.0.1/hook")
        except ImportError as error:
            print(f"{{type(error).__name__}}: {{error}}")
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    # send() makes it a failed delivery (recorded, retried); check_target() the command line's error.
    assert result.stdout.splitlines() == [
        "DeliveryError: apprise is not installed: pip install 'otel-datasink[alerts]'",
        "MissingExtraError: apprise is not installed: pip install 'otel-datasink[alerts]'",
    ]
    if alertmanager_or_none:
        assert [a["labels"]["subject"] for a in ours(alertmanager_or_none, active="true")] == ["nightly"]


# --- Alertmanager ------------------------------------------------------------------------------------------------


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    """A real Alertmanager on 127.0.0.1 (tests/alertmanager.py)."""
    if alertmanager_binary() is None:
        pytest.skip(
            "prometheus-alertmanager is not installed (.ci/run installs it: apt-get install prometheus-alertmanager)"
        )
    with running_alertmanager(tmp_path) as manager:
        yield manager


@pytest.fixture
def alertmanager_or_none(tmp_path: Path) -> Iterator[Alertmanager | None]:
    """A real Alertmanager when it is installed, else ``None`` (for tests about more than Alertmanager)."""
    if alertmanager_binary() is None:
        yield None
        return
    with running_alertmanager(tmp_path) as manager:
        yield manager


def ours(manager: Alertmanager, **filters: str) -> list[dict[str, Any]]:
    """The alerts of ``manager`` this test posted."""
    return [a for a in manager.alerts(**filters) if a["labels"].get("source") == "otel-datasink"]


def test_alertmanager_gets_the_alert_with_labels_and_annotations_then_resolved(alertmanager: Alertmanager) -> None:
    firing = notification(kind="failing_job", subject="ingest_orders", links={"run": "https://ci.example/run/7"})
    send(alertmanager.target, [firing], timeout=5, repeat=datetime.timedelta(minutes=5))
    (alert,) = ours(alertmanager, active="true")
    assert alert["labels"] == {
        "alertname": "failing_job",
        "subject": "ingest_orders",
        "severity": "critical",
        "incident_id": "3f2a9c",
        "source": "otel-datasink",
    }
    annotations = alert["annotations"]
    assert annotations["summary"] == "ingest_orders is 185 min old, SLA 60 min"
    assert annotations["owners"] == "@data-eng, ana@example.com"
    assert annotations["run_url"] == "https://ci.example/run/7"
    assert "Last error: Traceback (most recent call last):" in annotations["description"].splitlines()
    assert alert["generatorURL"] == "https://ci.example/run/7"
    assert alert["status"]["state"] == "active"
    starts = datetime.datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00"))
    ends = datetime.datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))
    assert starts == firing.opened_at
    # Ends a little after the next evaluation (5 min), unless posted again.
    assert (
        datetime.timedelta(minutes=6)
        <= ends - datetime.datetime.now(datetime.timezone.utc)
        <= datetime.timedelta(minutes=8)
    )

    resolved = dataclasses.replace(firing, state=RESOLVED, resolved_at=datetime.datetime.now(datetime.timezone.utc))
    send(alertmanager.target, [resolved], timeout=5)
    assert ours(alertmanager, active="true") == []
    # Alertmanager lists a resolved alert no more; were it still listed, its end is past.
    for alert in ours(alertmanager):
        ends = datetime.datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))
        assert ends <= datetime.datetime.now(datetime.timezone.utc)


def test_alertmanager_gets_links_on_the_templates_path_and_no_forged_line_from_hostile_spans(
    alertmanager: Alertmanager, tmp_path: Path
) -> None:
    # `alert` over a location where a job whose name would move the link failed with an error that would forge a line.
    location = str(tmp_path / "datasink")
    n = now_ns() // 1_000_000 * 1_000_000
    span = job_span("x/../../../evil?y=#frag", n - HOUR_NS, n - HOUR_NS + MINUTE_NS, failed=True, run_id="7#top")
    write_spans(location, [dataclasses.replace(span, status_message="boom\n[RESOLVED] failing_job x (critical)")])
    now = datetime.datetime.fromtimestamp(n / 1e9, tz=datetime.timezone.utc).isoformat()
    run_url = "https://airflow.example/dags/{job_name}/runs/{run_id}"
    assert (
        cli.main(["alert", "--location", location, "--now", now, "--notify", alertmanager.target, "--run-url", run_url])
        == 0
    )
    (alert,) = ours(alertmanager, active="true")
    link = "https://airflow.example/dags/x%2F..%2F..%2F..%2Fevil%3Fy%3D%23frag/runs/7%23top"
    assert alert["generatorURL"] == link and alert["annotations"]["run_url"] == link
    description = alert["annotations"]["description"].splitlines()
    assert "    [RESOLVED] failing_job x (critical)" in description
    assert not [line for line in description if line.startswith("[")]
    assert "\n" not in alert["annotations"]["summary"]


def test_a_firing_alert_without_repeat_leaves_its_end_to_alertmanager(alertmanager: Alertmanager) -> None:
    send(alertmanager.target, [notification()], timeout=5)
    (alert,) = ours(alertmanager, active="true")
    # Alertmanager's resolve_timeout (5 min by default) from now.
    ends = datetime.datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))
    assert ends > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=4)


def test_every_in_the_target_holds_a_firing_alert_until_the_next_cron_evaluation(alertmanager: Alertmanager) -> None:
    send(f"{alertmanager.target}?every=1h", [notification()], timeout=5, repeat=datetime.timedelta(minutes=1))
    (alert,) = ours(alertmanager, active="true")
    ends = datetime.datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))
    left = ends - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=1, minutes=29) <= left <= datetime.timedelta(hours=1, minutes=31)


def test_alertmanager_takes_several_alerts_in_one_post(alertmanager: Alertmanager) -> None:
    send(alertmanager.target, [notification(subject="orders"), notification(subject="refunds")], timeout=5)
    subjects = sorted(a["labels"]["subject"] for a in ours(alertmanager, active="true"))
    assert subjects == ["orders", "refunds"]


def test_a_resolved_time_before_the_opening_is_clamped(alertmanager: Alertmanager) -> None:
    # Alertmanager refuses an alert ending before it starts (400): the whole POST would be lost.
    skewed = notification(state=RESOLVED, resolved_at=NOW - datetime.timedelta(days=1), opened_at=NOW)
    send(alertmanager.target, [skewed], timeout=5)
    assert ours(alertmanager, active="true") == []


def test_alertmanager_refusing_the_post_is_a_one_line_delivery_error(alertmanager: Alertmanager) -> None:
    with pytest.raises(DeliveryError) as caught:
        send(f"alertmanager://127.0.0.1:{alertmanager.port}/no/such/prefix", [notification()], timeout=5)
    assert str(caught.value).startswith("HTTP 404"), caught.value
    assert "\n" not in str(caught.value)


def test_an_alertmanager_down_is_a_delivery_error_within_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="Connection refused"):
        send(f"alertmanager://127.0.0.1:{closed_port()}", [notification()], timeout=2)
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    ("details", "words"),
    [
        ({"freshness_minutes": 185.4, "freshness_sla_minutes": 60}, "data 3 h 5 min old (SLA 60 min)"),
        ({"freshness_sla_minutes": 60}, "no successful update (SLA 60 min)"),
        (
            {"current_streak": 5, "recent_failures": 9, "recent_runs": 20},
            "5 failed runs in a row; 9 failures of 20 runs in 7 days",
        ),
        (
            {"hung_runs": 2, "running_minutes": 130.0, "threshold_minutes": 45.5},
            "running for 2 h 10 min (hung after 46 min); 2 runs hung",
        ),
        (
            {
                "records_processed": 12,
                "baseline_mean": 5000.0,
                "baseline_stddev": 80.2,
                "baseline_runs": 14,
                "z_score": -62.2,
            },
            "12 records vs a mean of 5000 ± 80 over 14 runs; z-score -62.2",
        ),
        ({"expected_every_minutes": 60.0, "last_start": None}, "expected every 60 min"),
    ],
)
def test_how_bad_puts_each_kinds_measures_in_words(details: dict[str, object], words: str) -> None:
    assert how_bad(details) == words


def test_a_long_error_line_is_cut_and_a_short_error_kept_whole() -> None:
    assert last_error({"last_error_type": "ValueError", "last_error_message": "bad row"}) == "ValueError: bad row"
    (line,) = last_error({"last_error_message": "x" * 5000}).splitlines()
    assert len(line) == 300 and line.endswith("…")
