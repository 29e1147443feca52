"""Incidents over the real tables: conditions from the views of pipeline-written rows, the alerts rows written by
the real Writer and read back with local.connect, at controlled evaluation times; and the evaluation lock."""

from __future__ import annotations

import dataclasses
import datetime
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import pyarrow.parquet as pq
import pytest
from job_spans import HOUR_NS, MINUTE_NS, job_span, now_ns, write_spans

from otel_datasink import local
from otel_datasink.alerts import incidents
from otel_datasink.alerts.engine import LOCK_NAME, evaluation_lock
from otel_datasink.alerts.incidents import plan, rows
from otel_datasink.alerts.model import FIRING, RESOLVED, Condition, DeliveryError, Send
from otel_datasink.config import Options
from otel_datasink.lease import Busy as EvaluationBusy
from otel_datasink.lease import LeaseLost
from otel_datasink.schema import ALERTS
from otel_datasink.writer import Writer

SLACK = "slack://T0000AAAA1/B0000BBBB2/abcdefghijklmnopqrstuvwx"
WEBHOOK = "json://127.0.0.1:9/hook"
HOUR = datetime.timedelta(hours=1)
T0 = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


class Receiver:
    """Stands in for delivery.send: records what each target took; targets in ``down`` refuse."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, str, bool]] = []
        self.down: set[str] = set()
        self.tried: list[tuple[str, str]] = []
        """(target, state) of every attempt, taken or refused."""

    def send(self, target: str, send: Send) -> None:
        self.tried.append((target, send.notification.state))
        if target in self.down:
            raise DeliveryError(f"{target} refused")
        n = send.notification
        self.got.append((target, n.subject, n.state, n.reminder))


def evaluate(
    location: str,
    conditions: Sequence[Condition],
    now: datetime.datetime,
    receiver: Receiver,
    configured: Sequence[str] = (SLACK, WEBHOOK),
    **options,
) -> list[Send]:
    """One evaluation as the alert command makes it: under the lock, plan, deliver, write the rows.
    ``configured``: every target the configuration names."""
    with evaluation_lock(location, **options):
        con = local.connect(location, **options)
        sends = plan(conditions, con, now, targets=configured)
        con.close()
        outcomes = incidents.to_nobody(sends)  # closings: written, never sent
        for send in sends:
            if send.target is None:
                continue
            try:
                receiver.send(send.target, send)
            except DeliveryError as error:
                outcomes.append((send, False, str(error)))
            else:
                outcomes.append((send, True, None))
        if outcomes:
            Writer(Options.resolve(location, **options)).write(rows(outcomes, now))
    return sends


def stale(location: str, targets=(SLACK, WEBHOOK), suppress=4 * HOUR) -> list[Condition]:
    """A stale_dataset condition per row of stale_datasets (what the conditions module reads)."""
    con = local.connect(location)
    found = con.execute("SELECT dataset, freshness_minutes, freshness_sla_minutes FROM stale_datasets").fetchall()
    con.close()
    return [
        Condition(
            kind="stale_dataset",
            subject=dataset,
            severity="warning",
            since=None,
            summary=f"{dataset} is {minutes} min old, SLA {sla} min",
            details={"freshness_minutes": minutes, "freshness_sla_minutes": sla},
            targets=targets,
            suppress=suppress,
        )
        for dataset, minutes, sla in found
    ]


def update(location: str, ago_ns: int, dataset: str = "orders") -> None:
    """A successful update of ``dataset`` ``ago_ns`` ago, with a 60-minute SLA."""
    end = now_ns() - ago_ns
    updates = [dict(name=dataset, freshness_sla_minutes=60)]
    write_spans(location, [job_span(f"load_{dataset}", end - 5 * MINUTE_NS, end, updates=updates)])


def open_incidents(location: str) -> list[tuple]:
    con = local.connect(location)
    found = con.execute(
        "SELECT kind, subject, severity, target_count, undelivered_targets, all_delivered "
        "FROM alerts_open ORDER BY 1, 2"
    ).fetchall()
    con.close()
    return found


def test_an_incident_fires_once_reminds_after_its_interval_and_resolves(local_location):
    update(local_location, 3 * HOUR_NS)
    receiver = Receiver()
    conditions = stale(local_location)
    assert [c.subject for c in conditions] == ["orders"]

    evaluate(local_location, conditions, T0, receiver)
    assert receiver.got == [(SLACK, "orders", FIRING, False), (WEBHOOK, "orders", FIRING, False)]
    assert open_incidents(local_location) == [("stale_dataset", "orders", "warning", 2, 0, True)]

    receiver.got.clear()
    assert evaluate(local_location, stale(local_location), T0 + HOUR, receiver) == []  # within the 4 h
    assert evaluate(local_location, stale(local_location), T0 + 4 * HOUR, receiver) != []  # 4 h after: due
    assert sorted(receiver.got) == sorted([(SLACK, "orders", FIRING, True), (WEBHOOK, "orders", FIRING, True)])
    receiver.got.clear()
    assert evaluate(local_location, stale(local_location), T0 + 5 * HOUR, receiver) == []

    update(local_location, MINUTE_NS)  # fresh again
    assert stale(local_location) == []
    evaluate(local_location, [], T0 + 6 * HOUR, receiver)
    assert sorted(receiver.got) == sorted([(SLACK, "orders", RESOLVED, False), (WEBHOOK, "orders", RESOLVED, False)])
    assert open_incidents(local_location) == []
    receiver.got.clear()
    assert evaluate(local_location, [], T0 + 7 * HOUR, receiver) == []

    con = local.connect(local_location)
    history = con.execute("SELECT state, count(DISTINCT incident_id), count(*) FROM alerts GROUP BY 1").fetchall()
    assert sorted(history) == [(FIRING, 1, 4), (RESOLVED, 1, 2)]


def test_a_refusing_target_is_retried_while_the_other_got_its_message_once(local_location):
    update(local_location, 3 * HOUR_NS)
    receiver = Receiver()
    receiver.down.add(SLACK)
    evaluate(local_location, stale(local_location), T0, receiver)
    assert receiver.got == [(WEBHOOK, "orders", FIRING, False)]
    assert open_incidents(local_location) == [("stale_dataset", "orders", "warning", 2, 1, False)]

    evaluate(local_location, stale(local_location), T0 + HOUR, receiver)  # still down: tried again, webhook not
    receiver.down.clear()
    evaluate(local_location, stale(local_location), T0 + 2 * HOUR, receiver)
    assert receiver.got == [(WEBHOOK, "orders", FIRING, False), (SLACK, "orders", FIRING, False)]
    assert open_incidents(local_location) == [("stale_dataset", "orders", "warning", 2, 0, True)]
    evaluate(local_location, stale(local_location), T0 + 3 * HOUR, receiver)
    assert len(receiver.got) == 2

    con = local.connect(local_location)
    failed = con.execute("SELECT targets, details FROM alerts WHERE NOT delivered").fetchall()
    assert len(failed) == 2
    for target, details in failed:
        # Stored redacted; the error kept; the fingerprint tells the target apart.
        assert "abcdefghijklmnopqrstuvwx" not in target and "***" in target
        assert json.loads(details)["error"] == f"{SLACK} refused"
        assert json.loads(details)["target_id"] == incidents.target_id(SLACK)


def test_a_resolved_that_a_target_refused_is_retried(local_location):
    update(local_location, 3 * HOUR_NS)
    receiver = Receiver()
    evaluate(local_location, stale(local_location), T0, receiver)
    receiver.got.clear()
    receiver.down.add(WEBHOOK)
    evaluate(local_location, [], T0 + HOUR, receiver)
    assert receiver.got == [(SLACK, "orders", RESOLVED, False)]
    assert open_incidents(local_location) == []  # over, even though one target has not heard yet
    receiver.down.clear()
    sends = evaluate(local_location, [], T0 + 2 * HOUR, receiver)
    assert receiver.got[1:] == [(WEBHOOK, "orders", RESOLVED, False)]
    assert sends[0].notification.resolved_at == T0 + HOUR
    assert evaluate(local_location, [], T0 + 3 * HOUR, receiver) == []


MINUTE = datetime.timedelta(minutes=1)


def attempts_each_minute(
    location: str, conditions: Sequence[Condition], minutes: range, receiver: Receiver, target: str
) -> list[int]:
    """Evaluates at ``T0 + m`` minutes for each m of ``minutes``; the minutes at which ``target`` was tried."""
    tried = []
    for minute in minutes:
        before = len(receiver.tried)
        evaluate(location, conditions, T0 + minute * MINUTE, receiver)
        if any(t == target for t, _ in receiver.tried[before:]):
            tried.append(minute)
    return tried


def test_a_target_that_stays_down_is_tried_at_growing_intervals_up_to_the_suppression(local_location):
    receiver = Receiver()
    receiver.down.add(SLACK)
    condition = Condition(
        "failing_job", "etl", "critical", None, "etl failed", targets=(SLACK, WEBHOOK), suppress=6 * MINUTE
    )
    # Waits of 1, 2, 4 min after each failure, then capped at the 6 min suppression: not every evaluation.
    assert attempts_each_minute(local_location, [condition], range(20), receiver, SLACK) == [0, 1, 3, 7, 13, 19]
    # The other target, never held back: told at once, then reminded every 6 min.
    assert [(target, reminder) for target, _, _, reminder in receiver.got] == [(WEBHOOK, False)] + 3 * [(WEBHOOK, True)]
    con = local.connect(local_location)
    assert con.execute("SELECT count(*) FROM alerts WHERE NOT delivered").fetchone() == (6,)  # a row per attempt
    con.close()

    receiver.down.clear()  # back up: told at its next attempt, and the backoff is over
    assert attempts_each_minute(local_location, [condition], range(20, 26), receiver, SLACK) == [25]
    assert receiver.got[-1] == (SLACK, "etl", FIRING, False)
    receiver.down.add(SLACK)  # down again at its reminder: the waits start again from a minute
    assert attempts_each_minute(local_location, [condition], range(26, 35), receiver, SLACK) == [31, 32, 34]


def test_a_restarted_evaluator_keeps_the_backoff_of_the_rows(local_location):
    # Nothing is remembered between evaluations but the alerts rows: a new process reads the same failures.
    receiver = Receiver()
    receiver.down.add(SLACK)
    condition = Condition("failing_job", "etl", "critical", None, "etl failed", targets=(SLACK,))
    for minute in (0, 1, 3, 7):
        evaluate(local_location, [condition], T0 + minute * MINUTE, receiver)
    with local.connect(local_location) as con:
        assert plan([condition], con, T0 + 14 * MINUTE) == []  # 4 failures: 8 min after the last one
        assert [send.target for send in plan([condition], con, T0 + 15 * MINUTE)] == [SLACK]


def test_a_refused_resolved_is_retried_with_the_same_backoff(local_location):
    receiver = Receiver()
    condition = Condition("failing_job", "etl", "critical", None, "etl failed", targets=(SLACK, WEBHOOK))
    evaluate(local_location, [condition], T0, receiver)
    receiver.down.add(WEBHOOK)
    # The condition cleared at minute 1: its first RESOLVED, then retries 1, 2, 4, 8 min after each failure.
    assert attempts_each_minute(local_location, [], range(1, 15), receiver, WEBHOOK) == [1, 2, 4, 8]
    receiver.down.clear()
    assert attempts_each_minute(local_location, [], range(15, 18), receiver, WEBHOOK) == [16]
    assert receiver.got[-1] == (WEBHOOK, "etl", RESOLVED, False)
    assert [t for t, state in receiver.tried if state == RESOLVED].count(SLACK) == 1


def test_an_alertmanager_down_backs_off_to_five_minutes_and_back_up_gets_every_evaluation(local_location):
    alertmanager = "alertmanager://127.0.0.1:9093"
    receiver = Receiver()
    receiver.down.add(alertmanager)
    condition = Condition("hung_run", "etl", "warning", None, "etl running 90 min", targets=(alertmanager, SLACK))
    assert attempts_each_minute(local_location, [condition], range(23), receiver, alertmanager) == [
        0,
        1,
        3,
        7,
        12,
        17,
        22,
    ]
    receiver.down.clear()
    assert attempts_each_minute(local_location, [condition], range(23, 30), receiver, alertmanager) == [27, 28, 29]
    assert [target for target, *_ in receiver.got].count(SLACK) == 1


def test_retry_delay_doubles_from_a_minute_to_its_cap():
    assert incidents.retry_delay(0) == datetime.timedelta(0)
    assert [incidents.retry_delay(n) / MINUTE for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert incidents.retry_delay(10**6) == incidents.BACKOFF_MAX  # months of failures: no overflow
    assert incidents.retry_delay(3, cap=3 * MINUTE) == 3 * MINUTE


def test_two_kinds_on_one_subject_are_two_incidents(local_location):
    receiver = Receiver()
    conditions = [
        Condition("failing_job", "load_orders", "critical", None, "load_orders failed 3 times", targets=(SLACK,)),
        Condition("hung_run", "load_orders", "warning", None, "load_orders running 90 min", targets=(SLACK,)),
    ]
    sends = evaluate(local_location, conditions, T0, receiver)
    assert len({s.notification.incident_id for s in sends}) == 2
    assert open_incidents(local_location) == [
        ("failing_job", "load_orders", "critical", 1, 0, True),
        ("hung_run", "load_orders", "warning", 1, 0, True),
    ]
    evaluate(local_location, conditions[:1], T0 + HOUR, receiver)
    assert [row[0] for row in open_incidents(local_location)] == ["failing_job"]
    assert receiver.got[-1] == (SLACK, "load_orders", RESOLVED, False)
    # The condition back later: a new incident, not the old one reopened.
    again = evaluate(local_location, conditions, T0 + 2 * HOUR, receiver)
    assert [s.notification.kind for s in again] == ["hung_run"]
    assert again[0].notification.incident_id not in {s.notification.incident_id for s in sends}


def test_alertmanager_targets_get_a_firing_incident_at_every_evaluation(local_location):
    alertmanager = "alertmanager://127.0.0.1:9093"
    receiver = Receiver()
    condition = Condition("hung_run", "etl", "warning", None, "etl running 90 min", targets=(alertmanager, SLACK))
    for minutes in (0, 1, 2):
        evaluate(local_location, [condition], T0 + datetime.timedelta(minutes=minutes), receiver)
    assert [(target, reminder) for target, _, _, reminder in receiver.got] == [
        (alertmanager, False),
        (SLACK, False),
        (alertmanager, True),
        (alertmanager, True),
    ]


def test_incident_ids_are_deterministic_and_opened_at_is_the_evaluation(local_location):
    since = T0 - 3 * HOUR
    condition = Condition("stale_dataset", "orders", "info", since, "orders is stale", targets=(SLACK,))
    (send,) = plan([condition], local.connect(local_location), T0)
    assert send.notification.incident_id == incidents.incident_id("stale_dataset", "orders", T0)
    assert len(send.notification.incident_id) == 16 and int(send.notification.incident_id, 16) >= 0
    assert send.notification.opened_at == T0
    assert send.notification.details["since"] == since.isoformat()


def test_alert_rows_hold_the_table_schema_and_partition_by_event_time(local_location):
    receiver = Receiver()
    condition = Condition("missing_run", "nightly", "critical", None, "nightly did not run", targets=(SLACK,))
    evaluate(
        local_location, [condition], datetime.datetime(2026, 3, 9, 23, 59, 59, 999_000, datetime.timezone.utc), receiver
    )
    (path,) = Writer(Options.resolve(local_location)).fs.glob(f"{local_location}/alerts/dt=*/*.parquet")
    assert "/dt=2026-03-09/" in path
    assert pq.read_schema(path).remove_metadata() == ALERTS


# --- the lock --------------------------------------------------------------------------------------------------


def _concurrently(count: int, work: Callable[[], object]) -> list[object]:
    """Runs ``work`` in ``count`` threads released at once; each one's result or exception."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except Exception as error:  # noqa: BLE001 - collected for the test to look at
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class SlowReceiver(Receiver):
    """A receiver that takes a while, so that concurrent evaluations overlap."""

    def send(self, target: str, send: Send) -> None:
        time.sleep(0.3)
        with self._lock:
            super().send(target, send)

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()


def _concurrent_evaluations(location: str, **options) -> None:
    receiver = SlowReceiver()
    condition = Condition("failing_job", "etl", "critical", None, "etl failed", targets=(SLACK,))
    results = _concurrently(4, lambda: evaluate(location, [condition], T0, receiver, **options))
    assert sum(isinstance(r, EvaluationBusy) for r in results) == 3, results
    assert receiver.got == [(SLACK, "etl", FIRING, False)]
    # Once the first is done, the next evaluation runs and, having read its rows, sends nothing.
    assert evaluate(location, [condition], T0 + HOUR, receiver, **options) == []


def test_two_evaluations_at_once_on_a_local_folder_never_both_send(local_location):
    _concurrent_evaluations(local_location)


def test_two_evaluations_at_once_on_s3_never_both_send(s3_location, moto_server):
    _concurrent_evaluations(s3_location, s3_endpoint_url=moto_server.endpoint_url)


def test_the_lock_waits_a_bounded_time_and_is_free_after_the_block(local_location):
    with evaluation_lock(local_location):
        started = time.monotonic()
        with pytest.raises(EvaluationBusy):
            with evaluation_lock(local_location, wait=0.3):
                pass
        assert 0.3 <= time.monotonic() - started < 2
    with evaluation_lock(local_location):
        pass


def test_an_expired_s3_lease_is_taken_over_and_a_live_one_is_not(s3_location, moto_server):
    options = {"s3_endpoint_url": moto_server.endpoint_url}
    with evaluation_lock(s3_location, lease=datetime.timedelta(seconds=30), **options):
        with pytest.raises(EvaluationBusy):
            with evaluation_lock(s3_location, **options):
                pass
    # A crashed evaluator's lease: left behind, expired.
    writer = Writer(Options.resolve(s3_location, **options))
    bucket, key = f"{writer.root}/{LOCK_NAME}".split("/", 1)
    body = json.dumps({"owner": "dead", "expires": time.time() - 1}).encode()
    writer.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body)
    with evaluation_lock(s3_location, **options):
        pass
    writer.fs.invalidate_cache()
    assert not writer.fs.exists(f"{bucket}/{key}")
    # The lock object is not a table's: readers do not see it.
    assert local.connect(s3_location, **options).execute("SELECT count(*) FROM alerts").fetchone() == (0,)


def test_an_s3_lease_is_renewed_while_a_long_evaluation_runs_and_free_after_it(s3_location, moto_server):
    options = {"s3_endpoint_url": moto_server.endpoint_url}
    lease = datetime.timedelta(seconds=2)
    with evaluation_lock(s3_location, lease=lease, **options) as held:
        # Another evaluator tries for 2.5 leases, every 0.2 s: had ours lapsed once, it would have taken it over.
        started = time.monotonic()
        with pytest.raises(EvaluationBusy):
            with evaluation_lock(s3_location, wait=2.5 * lease.total_seconds(), lease=lease, **options):
                pass
        assert time.monotonic() - started >= 2 * lease.total_seconds()  # the block outlived its lease
        assert held.held()
        held.check()
    with evaluation_lock(s3_location, lease=lease, **options) as held:  # released: the next one takes it at once
        assert held.held()


def _wait_until(predicate: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_an_evaluation_whose_s3_lease_was_taken_over_learns_it_and_leaves_the_new_one(s3_location, moto_server, caplog):
    options = {"s3_endpoint_url": moto_server.endpoint_url}
    writer = Writer(Options.resolve(s3_location, **options))
    bucket, key = f"{writer.root}/{LOCK_NAME}".split("/", 1)
    with evaluation_lock(s3_location, lease=datetime.timedelta(seconds=1), **options) as held:
        # Another evaluator's lease in place of ours, as if ours had lapsed (S3 unreachable) and it took it over.
        body = json.dumps({"owner": "another", "expires": time.time() + 600}).encode()
        writer.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body)
        assert _wait_until(lambda: not held.held())  # the next renewal finds it
        with pytest.raises(LeaseLost):
            held.check()
    assert "taken over by another evaluator" in caplog.text
    # Leaving the block did not delete the other evaluator's lease, nor did a renewal overwrite it.
    with pytest.raises(EvaluationBusy):
        with evaluation_lock(s3_location, **options):
            pass
    assert json.loads(writer.fs.cat_file(f"{bucket}/{key}"))["owner"] == "another"


def test_a_local_lock_is_held_for_the_whole_block(local_location):
    with evaluation_lock(local_location) as held:
        held.check()
        assert held.held()


def test_a_target_named_twice_is_told_once(local_location):
    condition = Condition("failing_job", "etl", "critical", None, "etl failed", targets=(SLACK, WEBHOOK, SLACK))
    assert [send.target for send in plan([condition], local.connect(local_location), T0)] == [SLACK, WEBHOOK]


def test_a_location_with_alerts_only_is_no_location_of_tables(local_location):
    condition = Condition("missing_run", "nightly", "critical", None, "nightly did not run", targets=(SLACK,))
    evaluate(local_location, [condition], T0, Receiver())
    with pytest.raises(local.NoTablesError, match="holds no job_runs or dataset_status or dataset_checks files"):
        local.connect(local_location, must_exist=True)


def test_an_evaluation_in_another_process_holds_the_local_lock(local_location):
    # flock is per open file, across processes: a second evaluator (another cron job) is refused.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from otel_datasink.alerts.engine import evaluation_lock\n"
            "with evaluation_lock(sys.argv[1]):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.readline()\n",
            local_location,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(EvaluationBusy):
            with evaluation_lock(local_location):
                pass
    finally:
        holder.communicate("\n", timeout=30)
    with evaluation_lock(local_location):  # released when the holder left its block
        pass


def test_a_resolution_for_a_target_no_longer_configured_is_not_sent_and_says_so(local_location, caplog):
    condition = Condition("failing_job", "etl", "critical", None, "etl failed", targets=(SLACK,))
    evaluate(local_location, [condition], T0, Receiver())
    with local.connect(local_location) as con:
        # SLACK is gone from the configuration: nothing to deliver, only the row that closes the incident.
        assert [send.target for send in plan([], con, T0 + HOUR, targets=(WEBHOOK,))] == [None]
    assert "no longer configured" in caplog.text


# --- routing changed: incidents nobody configured can be told of ---------------------------------------------------


def alert_rows(location: str, subject: str) -> list[tuple]:
    """(state, targets, delivered, notified_at is null, details) of ``subject``'s alerts rows, oldest first."""
    with local.connect(location) as con:
        found = con.execute(
            "SELECT state, targets, delivered, notified_at IS NULL, details FROM alerts WHERE subject = ? "
            "ORDER BY event_time, state",
            [subject],
        ).fetchall()
    return [(*row[:4], json.loads(row[4])) for row in found]


def test_an_incident_whose_targets_were_all_removed_closes_when_it_clears_and_tells_nobody(local_location, caplog):
    receiver = Receiver()
    condition = Condition("failing_job", "etl", "critical", None, "etl failed", targets=(SLACK,))
    evaluate(local_location, [condition], T0, receiver, configured=(SLACK,))
    assert open_incidents(local_location) == [("failing_job", "etl", "critical", 1, 0, True)]

    # SLACK removed from the configuration (now WEBHOOK only), then the condition clears.
    receiver.tried.clear()
    sends = evaluate(local_location, [], T0 + HOUR, receiver, configured=(WEBHOOK,))
    assert [send.target for send in sends] == [None]
    assert receiver.tried == []  # nobody told
    assert open_incidents(local_location) == []
    state, targets, delivered, unnotified, details = alert_rows(local_location, "etl")[-1]
    assert (state, targets, delivered, unnotified) == (RESOLVED, None, None, True)
    assert details["closed"] == incidents.NOBODY_TOLD and "target_id" not in details
    assert "closed: " + incidents.NOBODY_TOLD in caplog.text
    # Closed for good: nothing to retry, nothing written at the next evaluations.
    assert evaluate(local_location, [], T0 + 2 * HOUR, receiver, configured=(WEBHOOK,)) == []
    assert len(alert_rows(local_location, "etl")) == 2

    # The condition back: a new incident, told to the targets configured now.
    again = Condition("failing_job", "etl", "critical", None, "etl failed", targets=(WEBHOOK,))
    evaluate(local_location, [again], T0 + 3 * HOUR, receiver, configured=(WEBHOOK,))
    assert receiver.got[-1:] == [(WEBHOOK, "etl", FIRING, False)] and receiver.tried == [(WEBHOOK, FIRING)]
    assert open_incidents(local_location) == [("failing_job", "etl", "critical", 1, 0, True)]
    with local.connect(local_location) as con:
        assert con.execute("SELECT count(DISTINCT incident_id) FROM alerts").fetchone() == (2,)


def test_an_open_incident_whose_condition_now_routes_nowhere_closes_while_it_holds(local_location):
    receiver = Receiver()
    routed = Condition("stale_dataset", "orders", "warning", None, "orders is stale", targets=(SLACK,))
    evaluate(local_location, [routed], T0, receiver, configured=(SLACK,))
    receiver.tried.clear()

    # The rule (or --notify) that routed it is gone: the condition holds, with no target, and nothing configured.
    unrouted = dataclasses.replace(routed, targets=())
    sends = evaluate(local_location, [unrouted], T0 + HOUR, receiver, configured=())
    assert [send.target for send in sends] == [None] and receiver.tried == []
    assert open_incidents(local_location) == []
    *_, details = alert_rows(local_location, "orders")[-1]
    assert details["closed"] == f"{incidents.UNROUTED}; {incidents.NOBODY_TOLD}"
    # Still holding, still routed nowhere: no incident reopens, nothing is written.
    assert evaluate(local_location, [unrouted], T0 + 2 * HOUR, receiver, configured=()) == []
    assert len(alert_rows(local_location, "orders")) == 2

    # Routed again (to WEBHOOK): a new incident opens and is told.
    rerouted = dataclasses.replace(routed, targets=(WEBHOOK,))
    evaluate(local_location, [rerouted], T0 + 3 * HOUR, receiver, configured=(WEBHOOK,))
    assert receiver.tried == [(WEBHOOK, FIRING)]
    assert open_incidents(local_location) == [("stale_dataset", "orders", "warning", 1, 0, True)]


def test_a_target_still_configured_elsewhere_is_told_the_unrouted_incident_closed(local_location):
    receiver = Receiver()
    routed = Condition("stale_dataset", "orders", "warning", None, "orders is stale", targets=(SLACK,))
    evaluate(local_location, [routed], T0, receiver)
    # orders routed nowhere now, SLACK still named by the configuration (another rule's): told it is closed, why.
    sends = evaluate(local_location, [dataclasses.replace(routed, targets=())], T0 + HOUR, receiver)
    assert receiver.got[-1] == (SLACK, "orders", RESOLVED, False)
    assert sends[0].notification.details["closed"] == incidents.UNROUTED
    assert open_incidents(local_location) == []
    state, targets, delivered, _, details = alert_rows(local_location, "orders")[-1]
    assert (state, delivered, details["closed"]) == (RESOLVED, True, incidents.UNROUTED) and "***" in targets
