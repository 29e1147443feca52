"""Root causes of stale datasets (``stale_datasets.root_cause*``, walked up ``dataset_lineage``) and alerts routed
by the platform's structure: ``owner`` rules, stale datasets held up by an upstream incident, ``failing_check``.
Runs are written in-process (the SDK's tracer and :class:`DatasinkSpanProcessor`, with ``job.inputs``,
``dataset.name`` and ``job.owners``), read back through DuckDB; alerts go to a real HTTP receiver (Apprise
``json://``) and the real Alertmanager."""

from __future__ import annotations

import datetime
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from alertmanager import Alertmanager
from alertmanager import binary as alertmanager_binary
from alertmanager import running as running_alertmanager
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_datasink import DatasinkSpanProcessor, cli, local
from otel_datasink.alerts import conditions
from otel_datasink.alerts.rules import load_rules
from otel_datasink.catalog import pin_time

MINUTE_NS = 60 * 10**9
ROOT_COLUMNS = "dataset, root_cause_dataset, root_cause_job, root_cause, hops"


class Platform:
    """Runs of jobs written through the in-process processor, at times relative to one instant (``now``)."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.now_ns = time.time_ns() // 10**9 * 10**9
        self.provider = TracerProvider()
        self.provider.add_span_processor(DatasinkSpanProcessor(location))
        self.tracer = self.provider.get_tracer("tests")

    @property
    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.now_ns / 1e9, tz=datetime.timezone.utc)

    def run(
        self,
        job: str,
        minutes_ago: int,
        *,
        writes: str | None = None,
        reads: list[str] | None = None,
        owners: list[str] | None = None,
        error: str | None = None,
        sla: int | None = 60,
        checks: dict[str, bool] | None = None,
    ) -> None:
        """A run of ``job`` that ended ``minutes_ago``: it read ``reads``, wrote ``writes`` (with a freshness SLA of
        ``sla`` minutes), failed with ``error`` when given, and checked ``writes`` with ``checks`` (name -> passed)."""
        attributes: dict[str, Any] = {"job.name": job}
        if writes:
            attributes["dataset.name"] = writes
        if reads:
            attributes["job.inputs"] = reads
        if owners:
            attributes["job.owners"] = owners
        end = self.now_ns - minutes_ago * MINUTE_NS
        span = self.tracer.start_span(job, attributes=attributes, start_time=end - MINUTE_NS)
        if writes and error is None and sla is not None:
            span.add_event("dataset.update", {"dataset.name": writes, "dataset.freshness_sla_minutes": sla}, end)
        for name, passed in (checks or {}).items():
            span.add_event("dataset.check", {"dataset.name": writes, "check.name": name, "check.passed": passed}, end)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=end)

    def flush(self) -> None:
        self.provider.force_flush()

    def roots(self) -> list[tuple]:
        """``stale_datasets``' root cause columns, by dataset, as seen at :attr:`now`."""
        self.flush()
        with local.connect(self.location) as con:
            pin_time(con, self.now, None)
            return con.execute(f"SELECT {ROOT_COLUMNS} FROM stale_datasets ORDER BY dataset").fetchall()


@pytest.fixture
def platform(local_location) -> Iterator[Platform]:
    platform = Platform(local_location)
    yield platform
    platform.provider.shutdown()


def broken_chain(platform: Platform, owners: dict[str, list[str]] | None = None) -> None:
    """raw.orders (load_raw, failing its last 3 runs) -> mart.orders (build_orders) -> report.daily (publish), each
    last written 3 h ago with an SLA of 1 h; ``owners``: job -> its owners."""
    owners = owners or {}
    platform.run("load_raw", 180, writes="raw.orders", owners=owners.get("load_raw"))
    for minutes_ago in (90, 60, 30):
        platform.run(
            "load_raw", minutes_ago, writes="raw.orders", error="source bucket unreachable\nTraceback: ...",
            owners=owners.get("load_raw"),
        )  # fmt: skip
    platform.run("build_orders", 175, reads=["raw.orders"], writes="mart.orders", owners=owners.get("build_orders"))
    platform.run("publish", 170, reads=["mart.orders"], writes="report.daily", owners=owners.get("publish"))


def test_a_chain_under_a_failing_job_has_that_job_as_every_datasets_root(platform):
    broken_chain(platform)
    cause = "load_raw failing 3 runs: source bucket unreachable"
    assert platform.roots() == [
        ("mart.orders", "raw.orders", "load_raw", f"raw.orders is stale: {cause}", 2),
        ("raw.orders", "raw.orders", "load_raw", cause, 1),
        ("report.daily", "raw.orders", "load_raw", f"raw.orders is stale: {cause}", 3),
    ]


def test_two_roots_each_explain_their_own_and_a_dataset_fed_by_both_takes_the_first_by_name(platform):
    platform.run("load_a", 300, writes="a.raw")
    platform.run("load_b", 300, writes="b.raw")
    platform.run("build_a", 290, reads=["a.raw"], writes="a.mart")
    platform.run("build_b", 290, reads=["b.raw"], writes="b.mart")
    platform.run("join", 280, reads=["b.mart", "a.mart"], writes="joined")
    platform.run("fresh_source", 5, writes="c.raw")  # fresh: explains nothing below it
    platform.run("build_c", 290, reads=["c.raw"], writes="c.mart")
    assert platform.roots() == [
        ("a.mart", "a.raw", None, "a.raw is stale", 1),
        ("a.raw", "a.raw", None, None, 0),
        ("b.mart", "b.raw", None, "b.raw is stale", 1),
        ("b.raw", "b.raw", None, None, 0),
        ("c.mart", "c.mart", None, None, 0),
        ("joined", "a.raw", None, "a.raw is stale", 2),
    ]


def test_a_cycle_ends_and_a_self_edge_is_no_step(platform):
    platform.run("p_to_q", 200, reads=["p"], writes="q")
    platform.run("q_to_p", 200, reads=["q"], writes="p")
    platform.run("merge", 200, reads=["s"], writes="s")  # a merge into s: an edge from s to itself
    platform.run("merge_fails", 20, reads=["s"], writes="s", error="lock timeout")
    assert platform.roots() == [
        ("p", "q", None, "q is stale", 1),
        ("q", "p", None, "p is stale", 1),
        ("s", "s", "merge_fails", "merge_fails failing 1 run: lock timeout", 1),
    ]


def test_a_walk_stops_after_five_hops(platform):
    names = [f"d{i}" for i in range(8)]
    platform.run("load", 300, writes=names[0])
    for upstream, downstream in zip(names, names[1:], strict=False):
        platform.run(f"make_{downstream}", 300, reads=[upstream], writes=downstream)
    roots = {row[0]: row[1:] for row in platform.roots()}
    assert roots["d5"] == ("d0", None, "d0 is stale", 5)
    assert roots["d7"] == ("d2", None, "d2 is stale", 5)


# --- alerts routed by owner and root cause ----------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 keeping the JSON bodies POSTed to it (Apprise ``json://``)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> list[str]:
        """The texts (title and message) received since the last call."""
        texts = [body["title"] + "\n" + body["message"] for body in self.bodies]
        self.bodies.clear()
        return texts


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    pytest.importorskip("apprise")
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def alertmanager(tmp_path) -> Iterator[Alertmanager]:
    """A real Alertmanager on 127.0.0.1 (tests/alertmanager.py)."""
    if alertmanager_binary() is None:
        pytest.skip("prometheus-alertmanager is not installed (.ci/run installs it)")
    with running_alertmanager(tmp_path) as manager:
        yield manager


def alert(platform: Platform, rules: str, at: datetime.datetime | None = None, *flags: str) -> int:
    """``otel-datasink alert`` with the rules file ``rules`` at ``at`` (default: the platform's now)."""
    platform.flush()
    path = f"{platform.location}.rules.toml"
    with open(path, "w") as file:
        file.write(rules)
    at = at or platform.now
    return cli.main(["alert", "--location", platform.location, "--now", at.isoformat(), "--rules", path, *flags])


CAUSE = "raw.orders is stale: load_raw failing 3 runs: source bucket unreachable"


def test_a_broken_job_pages_its_owner_once_and_downstream_owners_hear_the_cause_once(platform, receiver, alertmanager):
    broken_chain(platform, {"load_raw": ["team-raw"], "build_orders": ["team-mart"], "publish": ["team-mart-bi"]})
    rules = f"""
[[rule]]
owner = "team-raw"
notify = ["{alertmanager.target}"]

[[rule]]
owner = "team-mart*"
notify = ["{receiver.url}"]
"""
    assert alert(platform, rules) == 0

    # The root's incident, to its owner: the failing job, with what it holds up (raw.orders, owned by the same team
    # and routed to the same target, is no page of its own).
    (root,) = [a for a in alertmanager.alerts(active="true") if a["labels"].get("source") == "otel-datasink"]
    assert root["labels"]["alertname"] == "failing_job" and root["labels"]["subject"] == "load_raw"
    assert root["annotations"]["summary"].endswith("holds up 3 stale datasets: mart.orders, raw.orders, report.daily")
    # The downstream owners: one message for both datasets, each with the cause.
    (told,) = receiver.take()
    assert f"dataset mart.orders is stale because {CAUSE}" in told
    assert f"dataset report.daily is stale because {CAUSE}" in told

    # Past the reminder interval: the root reminds, the held-up datasets are not told again.
    assert alert(platform, rules, platform.now + datetime.timedelta(hours=5)) == 0
    assert receiver.take() == []
    with local.connect(platform.location) as con:
        held = con.execute(
            "SELECT subject, json_extract_string(details, '$.held_up_by') FROM alerts_open "
            "WHERE kind = 'stale_dataset' ORDER BY subject"
        ).fetchall()
    assert held == [("mart.orders", "failing_job of load_raw"), ("report.daily", "failing_job of load_raw")]


def test_a_root_that_pages_nobody_leaves_each_stale_dataset_its_own_incident_with_its_cause(platform, receiver):
    broken_chain(platform, {"build_orders": ["team-mart"]})
    rules = f"""
[[rule]]
job = "load_raw"
failure_streak = 5

[[rule]]
owner = "team-mart"
notify = ["{receiver.url}"]

[[rule]]
enabled = false
"""
    assert alert(platform, rules) == 0
    (told,) = receiver.take()  # a failure streak of 3 is below the rule's 5: mart.orders is its own incident
    assert f"dataset mart.orders is stale because {CAUSE}" in told


def test_a_failing_check_fires_for_its_datasets_rule_and_resolves_when_it_passes_again(platform, receiver):
    platform.run("build_orders", 10, writes="mart.orders", owners=["team-mart"], checks={"not_null_id": False})
    rules = f"""
[[rule]]
dataset = "mart.*"
kinds = ["failing_check"]
notify = ["{receiver.url}"]

[[rule]]
enabled = false
"""
    assert alert(platform, rules) == 0
    (fired,) = receiver.take()
    assert "check not_null_id on mart.orders failed" in fired

    platform.run("build_orders", 1, writes="mart.orders", owners=["team-mart"], checks={"not_null_id": True})
    assert alert(platform, rules) == 0
    (resolved,) = receiver.take()
    assert "not_null_id on mart.orders" in resolved and "resolved" in resolved.lower()


def test_an_owner_glob_selects_by_the_owners_the_data_records(platform, tmp_path):
    platform.run("load_raw", 30, writes="raw.orders", owners=["team-raw"], error="boom")
    platform.run("load_web", 30, writes="raw.web", owners=["team-web"], error="boom")
    platform.flush()
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nowner = "team-r*"\nseverity = "info"\n\n[[rule]]\nenabled = false\n')
    with local.connect(platform.location) as con:
        pin_time(con, platform.now, None)
        owners = con.execute("SELECT dataset, owners FROM dataset_status_latest ORDER BY dataset").fetchall()
        found = conditions.evaluate(con, load_rules(rules, ["json://127.0.0.1:9/x"]), platform.now)
    assert owners == [("raw.orders", ["team-raw"]), ("raw.web", ["team-web"])]
    # raw.orders (never written successfully) is stale, selected by its owners; raw.web's are team-web's.
    assert [(c.kind, c.subject, c.severity) for c in found] == [
        ("stale_dataset", "raw.orders", "info"),
        ("failing_job", "load_raw", "info"),
    ]


def test_a_datasets_open_incident_closes_into_its_roots_once_the_root_pages_the_same_target(platform, receiver):
    broken_chain(platform)
    everything = f'[[rule]]\nnotify = ["{receiver.url}"]\n'
    muted_root = f'[[rule]]\njob = "load_raw"\nkinds = ["failing_job"]\nenabled = false\n\n{everything}'
    assert alert(platform, muted_root) == 0
    assert len(receiver.take()) == 3  # no root incident: each stale dataset is its own, with its cause

    assert alert(platform, everything, platform.now + datetime.timedelta(minutes=5)) == 0
    texts = receiver.take()
    assert sum("holds up 3 stale datasets" in text for text in texts) == 1
    # The three closings go as one digest (held-up datasets are told in digests).
    assert "\n".join(texts).count("Closed: held up by failing_job of load_raw, whose incident tells of it") == 3
    with local.connect(platform.location) as con:
        assert con.execute("SELECT kind, subject FROM alerts_open").fetchall() == [("failing_job", "load_raw")]
