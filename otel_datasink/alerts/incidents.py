"""Incidents: what to send, and which ``alerts`` rows record it, from the conditions that hold now and the history.

The state of every incident is the ``alerts`` table itself, one row per notification event per target:

- an incident opens when a condition first holds for its (kind, subject) with no open incident; its id is a
  hash of kind, subject and the opening instant, and ``opened_at`` is the evaluation that opened it (the
  condition's own ``since``, which the views may move or not know, goes into the details);
- it is FIRING to each of its condition's targets once, then again (a reminder) only once its suppression
  interval has passed since the last message that target took; Alertmanager targets
  (:func:`.delivery.wants_every_evaluation`) get it at every evaluation, as they expect;
- a message a target did not take (``delivered`` false) is retried, target by target (one target down never holds
  back the others), with a backoff (:func:`retry_delay`): the wait after the last failed attempt doubles with each
  consecutive failure of that incident and target, from :data:`BACKOFF_FIRST` up to :data:`BACKOFF_MAX` (or the
  suppression interval, or :data:`ALERTMANAGER_BACKOFF_MAX` for an Alertmanager), so a dead target costs a failed
  attempt and a row now and then, not at every evaluation. The failures counted are the rows themselves, so the
  backoff survives restarts and holds across evaluator processes;
- it is RESOLVED, to the targets it was told of, when its condition no longer holds (its rule disabled or removed
  included: a muted condition is not found), or when it holds but no target is configured for it any more (the
  routing changed: an incident nobody is told of is no incident, as one with no target never opens); a RESOLVED a
  target did not take is retried too, with the same backoff;
- it is held back while acknowledged or silenced (:mod:`.holds`): no FIRING message, the first hold of a silence
  recorded by a FIRING row with no target (which opens a new incident);
- when none of the targets it was told of is configured any more, nobody can be told: a RESOLVED row of its own,
  with no target (``targets`` and ``delivered`` null) and ``details.closed`` saying why, closes it, or
  ``alerts_open`` (an incident's latest row FIRING) would list it forever. A later condition of the same (kind,
  subject) opens a new incident, told to the targets configured then.

:func:`plan` decides (pure but for reading the history through DuckDB), the caller delivers, :func:`rows` turns
the outcomes into rows for :meth:`~otel_datasink.writer.Writer.write`, all at one ``now`` passed in
(:mod:`.engine` runs them in turn, under the location's lock).

A target is stored redacted (:func:`.delivery.redact`); ``details.target_id`` is a fingerprint (a truncated
SHA-256) of the whole target, which tells apart targets that redact alike (two Slack webhooks). The raw target
of an incident whose condition cleared is found among the current conditions' targets and the ``targets`` given
to :func:`plan` (every target the configuration names): the table never holds a secret.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import duckdb

from otel_datasink.alerts import delivery
from otel_datasink.alerts.causes import held_up_reason
from otel_datasink.alerts.model import FIRING, RESOLVED, Condition, Notification, Outcome, Send
from otel_datasink.schema import ALERTS_TABLE, Rows

if TYPE_CHECKING:
    from otel_datasink.alerts.holds import Holds

_logger = logging.getLogger(__name__)

HISTORY_DAYS = 400
"""Days of ``alerts`` partitions read for the history: those ``alerts_open`` reads (``dataset_window_days``)."""
BACKOFF_FIRST = datetime.timedelta(minutes=1)
"""The wait before the first retry of a message a target did not take; it doubles with each further consecutive
failure. A minute: under ``--watch 60`` (or cron every few minutes) the first retries are at the next evaluations,
as before, so a brief outage costs nothing; a target that stays down is tried ever more rarely."""
BACKOFF_MAX = datetime.timedelta(hours=1)
"""The longest wait between two attempts to a target that stays down (no longer than the rule's ``suppress`` for a
FIRING, when that is shorter: its reminder would be due by then): a dead webhook costs a failed attempt and a row
per incident an hour, and a target back up hears of its incidents within the hour."""
ALERTMANAGER_BACKOFF_MAX = datetime.timedelta(minutes=5)
"""The longest wait for an Alertmanager that stays down. Alertmanager is posted every evaluation because it resolves
an alert not posted again; one back up (empty after a restart) must hear of the open incidents soon, since it pages
for them: five minutes, Alertmanager's default ``resolve_timeout``. Still a row per incident every 5 min, not every
evaluation."""
_BACKOFF_DOUBLINGS = 32
"""Enough doublings to pass any cap; bounds the loop for a target failing for months."""
_BOOKKEEPING = (
    "target_id",
    "reminder",
    "error",
    "owners",
    "links",
    "resolved_at",
    "silence_id",
    "silenced_by",
    "silenced_until",
)
"""Keys of the ``details`` JSON that record the notification, not facts of the condition. (``closed``, why an
incident was closed, is not one: a retried RESOLVED says it again.)"""
UNROUTED = "no target configured for it any more (its condition still holds)"
"""``details.closed`` of an incident closed because the configuration routes its condition nowhere now."""
NOBODY_TOLD = "none of the targets it was told of is configured any more: nobody told"
"""``details.closed`` of the target-less RESOLVED row that closes an incident nobody configured can be told of."""
HELD_NOBODY_TOLD = "held by a silence while it was open: nobody told"
"""``details.closed`` of the target-less RESOLVED row that closes an incident nobody was told of (a silence held it)."""


def to_nobody(sends: Iterable[Send]) -> list[Outcome]:
    """The outcomes of the sends with no target to write (closings, a silence's first hold: written, never
    delivered): nothing sent, no error."""
    return [Outcome(send, None, None) for send in sends if send.target is None and send.record]


def target_id(target: str) -> str:
    """A fingerprint of ``target`` (16 hex digits of its SHA-256): tells targets apart without storing secrets."""
    return hashlib.sha256(target.strip().encode()).hexdigest()[:16]


def incident_id(kind: str, subject: str, opened_at: datetime.datetime) -> str:
    """The id of the incident of (kind, subject) opened at ``opened_at``: 16 hex digits, the same on every run."""
    key = f"{kind}\x00{subject}\x00{_ms(opened_at)}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# --- the history -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Told:
    """What one target was last told of one incident in one state."""

    delivered: bool
    """Whether the latest message took (no later delivered one means a retry is due)."""
    last_delivered_at: datetime.datetime | None
    """The latest message it took."""
    failures: int = 0
    """Its messages that failed since the latest it took: the consecutive failures the backoff counts."""
    last_attempt_at: datetime.datetime | None = None
    """The latest message, taken or not: the backoff's wait runs from it."""


_INCIDENTS_SQL = """
WITH events AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY incident_id
            ORDER BY event_time DESC, CASE WHEN state = 'RESOLVED' THEN 0 ELSE 1 END,
                coalesce(details ->> '$.target_id', targets) DESC
        ) AS recency,
        min(event_time) FILTER (WHERE state = 'RESOLVED') OVER (PARTITION BY incident_id) AS resolved_at
    FROM alerts
    WHERE dt >= ? AND state IN ('FIRING', 'RESOLVED')
)
SELECT incident_id, kind, subject, severity, state, opened_at, summary, details, resolved_at
FROM events
WHERE recency = 1
ORDER BY opened_at, incident_id
"""
"""Every incident of the history with its latest state (ties as ``alerts_open`` breaks them); the rows of
acknowledgements and silences (:mod:`.holds`) are no state."""

_TOLD_SQL = """
WITH events AS (
    SELECT
        *,
        coalesce(details ->> '$.target_id', targets) AS target_key,
        row_number() OVER (
            PARTITION BY incident_id, coalesce(details ->> '$.target_id', targets), state
            ORDER BY event_time DESC, CASE WHEN delivered THEN 0 ELSE 1 END
        ) AS recency,
        max(CASE WHEN delivered THEN notified_at END) OVER (
            PARTITION BY incident_id, coalesce(details ->> '$.target_id', targets), state
        ) AS delivered_at
    FROM alerts
    WHERE dt >= ? AND state IN ('FIRING', 'RESOLVED')
)
SELECT
    incident_id,
    target_key,
    state,
    bool_or(coalesce(delivered, FALSE)) FILTER (WHERE recency = 1) AS delivered,
    max(delivered_at) AS last_delivered_at,
    count(*) FILTER (
        WHERE NOT coalesce(delivered, FALSE) AND (delivered_at IS NULL OR notified_at > delivered_at)
    ) AS failures,
    max(notified_at) AS last_attempt_at
FROM events
GROUP BY incident_id, target_key, state
"""
"""Per incident, target and state: whether the latest message took, when the latest that took was sent, how many
failed since, and when the latest was sent."""


def _history(
    con: duckdb.DuckDBPyConnection, now: datetime.datetime
) -> tuple[list[Notification], dict[tuple[str, str, str], _Told]]:
    """The incidents of the ``alerts`` table, each as the notification of its latest event (its facts, without
    what records the sending), and what each target was told, over :data:`HISTORY_DAYS`."""
    since = history_start(now)
    incidents = [
        Notification(
            incident_id=row[0],
            kind=row[1],
            subject=row[2],
            severity=row[3],
            state=row[4],
            opened_at=row[5],
            summary=row[6],
            details=_facts(row[7]),
            resolved_at=row[8],
        )
        for row in con.execute(_INCIDENTS_SQL, [since]).fetchall()
    ]
    told = {
        (row[0], row[1], row[2]): _Told(bool(row[3]), row[4], int(row[5] or 0), row[6])
        for row in con.execute(_TOLD_SQL, [since]).fetchall()
    }
    return incidents, told


def history_start(now: datetime.datetime) -> str:
    """The first ``dt`` partition of the history read at ``now``."""
    return (now - datetime.timedelta(days=HISTORY_DAYS)).astimezone(datetime.timezone.utc).strftime("%Y-%m-%d")


def history(con: duckdb.DuckDBPyConnection, now: datetime.datetime) -> list[Notification]:
    """The incidents of the ``alerts`` table at ``now``, each as of its latest FIRING or RESOLVED row."""
    return _history(con, now)[0]


def _facts(details: str | None) -> dict[str, Any]:
    """The condition's facts of a row's ``details`` (without the keys that record the notification)."""
    try:
        loaded = json.loads(details or "{}")
    except ValueError:
        return {}
    return {k: v for k, v in loaded.items() if k not in _BOOKKEEPING} if isinstance(loaded, dict) else {}


# --- the plan --------------------------------------------------------------------------------------------------


def plan(
    conditions: Sequence[Condition],
    con: duckdb.DuckDBPyConnection,
    now: datetime.datetime,
    *,
    targets: Iterable[str] = (),
    holds: Holds | None = None,
) -> list[Send]:
    """The messages to send at ``now`` for ``conditions`` (those that hold now), given the ``alerts`` history.

    ``con`` is a connection with the ``alerts`` table (:func:`otel_datasink.local.connect`, opened after the
    last write). ``targets``: every target the configuration names (``--notify``, the rules file), so that the
    RESOLVED of an incident whose condition cleared reaches targets that no condition names now; a target of an
    incident that is no longer configured is skipped, with a warning. A condition with no target closes its open
    incident (the routing changed). An incident with nobody left to tell gets a send with no target (``target``
    None): not to deliver, only its row to write (:func:`to_nobody`). ``holds``: the acknowledgements and
    silences in force (:mod:`.holds`); a held condition's FIRING messages are not sent, it gets a send with no
    target and ``held`` saying why instead.
    """
    incidents, told = _history(con, now)
    open_by_key = {(i.kind, i.subject): i for i in incidents if i.state == FIRING}  # the latest opened wins
    known = {target_id(t): t for t in (*targets, *(t for c in conditions for t in c.targets))}
    # What each incident's targets were told, by incident: a resolution looks at its own, not the whole history.
    told_of: dict[str, dict[tuple[str, str], _Told]] = {}
    for (incident_key, target_key, state), what in told.items():
        told_of.setdefault(incident_key, {})[(target_key, state)] = what
    sends: list[Send] = []
    # Held: a condition with a target. One with none (the routing changed) holds, but is no one's incident.
    held = {condition.key for condition in conditions if condition.targets}
    # Why one with none closes: a held-up stale dataset is told in its root's incident (:mod:`.causes`).
    unrouted = {c.key: held_up_reason(c) or UNROUTED for c in conditions if not c.targets}
    for condition in conditions:
        incident = open_by_key.get(condition.key)
        open_id = incident.incident_id if incident is not None else None
        hold = holds.of(condition, open_id) if holds is not None and condition.targets else None
        if hold is None:
            sends += _firing(condition, incident, told, now)
            continue
        notification = (
            _notification(condition, incident.incident_id, incident.opened_at)
            if incident is not None
            else _notification(condition, incident_id(*condition.key, now), now)
        )
        details = {**notification.details, **hold.details}
        sends.append(
            Send(dataclasses.replace(notification, details=details), None, held=hold.reason, record=hold.record)
        )
    for incident in incidents:
        key = (incident.kind, incident.subject)
        if incident.state == FIRING and key not in held:
            reason = unrouted.get(key)
            sends += _resolving(incident, told_of.get(incident.incident_id, {}), known, now, retry=False, reason=reason)
        elif incident.state == RESOLVED:
            sends += _resolving(incident, told_of.get(incident.incident_id, {}), known, now, retry=True)
    return sends


def _firing(
    condition: Condition,
    incident: Notification | None,
    told: dict[tuple[str, str, str], _Told],
    now: datetime.datetime,
) -> list[Send]:
    """The FIRING messages of a condition that holds: all of them for a new incident, else per target those due."""
    targets = dict.fromkeys(condition.targets)  # a target named twice (a rule and --notify) is told once
    if incident is None:  # opened now: the condition's own ``since`` goes into the details
        notification = _notification(condition, incident_id(*condition.key, now), now)
        return [Send(notification, target) for target in targets]
    sends = []
    for target in targets:
        state = told.get((incident.incident_id, target_id(target), FIRING))
        if _due(target, state, condition.suppress, now, incident.incident_id):
            reminder = state is not None and state.last_delivered_at is not None
            notification = _notification(condition, incident.incident_id, incident.opened_at, reminder=reminder)
            sends.append(Send(notification, target))
    return sends


def _due(target: str, state: _Told | None, suppress: datetime.timedelta, now: datetime.datetime, incident: str) -> bool:
    """Whether a target is to be told of an open incident now."""
    if state is None:  # never told (a target added since)
        return True
    if not state.delivered:  # the last message failed: again once its backoff has passed
        return _retry_due(target, state, now, incident, suppress)
    if delivery.wants_every_evaluation(target):  # Alertmanager resolves an alert not posted again
        return True
    return state.last_delivered_at is None or now - state.last_delivered_at >= suppress


def retry_delay(failures: int, cap: datetime.timedelta = BACKOFF_MAX) -> datetime.timedelta:
    """The wait after ``failures`` consecutive failed attempts before the next one: :data:`BACKOFF_FIRST`, doubled
    for each failure after the first, at most ``cap`` (1, 2, 4, 8, 16, 32, 60, 60... minutes by default)."""
    if failures <= 0:
        return datetime.timedelta(0)
    delay = BACKOFF_FIRST
    for _ in range(min(failures - 1, _BACKOFF_DOUBLINGS)):
        if delay >= cap:
            break
        delay *= 2
    return min(delay, cap)


def _backoff_cap(target: str, suppress: datetime.timedelta | None) -> datetime.timedelta:
    """The longest wait between two attempts to ``target`` (:data:`BACKOFF_MAX`, :data:`ALERTMANAGER_BACKOFF_MAX`)."""
    if delivery.wants_every_evaluation(target):
        return ALERTMANAGER_BACKOFF_MAX
    return BACKOFF_MAX if suppress is None else min(BACKOFF_MAX, suppress)


def _retry_due(
    target: str, state: _Told, now: datetime.datetime, incident: str, suppress: datetime.timedelta | None = None
) -> bool:
    """Whether a message ``target`` did not take is to be tried again now: its backoff has passed since the last
    attempt (a clock behind the last attempt's waits too, rather than retrying at once)."""
    if state.last_attempt_at is None:
        return True
    delay = retry_delay(state.failures, _backoff_cap(target, suppress))
    if now - state.last_attempt_at >= delay:
        return True
    _logger.info(
        "%s did not take incident %s's last %d message(s): next attempt after %s",
        delivery.redact(target),
        incident,
        state.failures,
        _iso(state.last_attempt_at + delay),
    )
    return False


def _resolving(
    incident: Notification,
    told: dict[tuple[str, str], _Told],
    known: dict[str, str],
    now: datetime.datetime,
    *,
    retry: bool,
    reason: str | None = None,
) -> list[Send]:
    """The RESOLVED messages of an incident, given what its targets were told ((target, state) -> what): to every
    target sent its FIRING, delivered or not (so the incident closes even if none took it), or, when none of them
    is configured any more, one with no target (its row closes the incident); ``retry``: to those that did not take
    its RESOLVED, once their backoff has passed. ``reason``: why it closes (``details.closed``), when not because its
    condition cleared."""
    if retry:
        keys = [
            key
            for (key, state), what in told.items()
            # A key of None: the target-less row of a closing, which nobody is to be told of.
            if state == RESOLVED
            and key is not None
            and not what.delivered
            and _retry_due(known.get(key, key), what, now, incident.incident_id)
        ]
        resolved_at = incident.resolved_at or now
    else:
        # A key of None: the target-less row of a silence's hold, which told nobody.
        keys = [key for (key, state) in told if state == FIRING and key is not None]
        resolved_at = now
        if not keys and any(key is None for key, state in told if state == FIRING):
            reason = reason or HELD_NOBODY_TOLD
    details = incident.details if reason is None else {**incident.details, "closed": reason}
    notification = dataclasses.replace(incident, state=RESOLVED, details=details, resolved_at=resolved_at)
    sends: list[Send] = []
    for key in sorted(keys):
        if key in known:
            sends.append(Send(notification, known[key]))
        else:  # its raw form (with its secrets) is nowhere: the table holds it redacted
            _logger.log(
                logging.INFO if retry else logging.WARNING,
                "incident %s (%s of %s) is over, but a target it was sent to is no longer configured: not told",
                incident.incident_id,
                incident.kind,
                incident.subject,
            )
    if not sends and not retry:
        sends.append(_closing(notification))
    return sends


def _closing(notification: Notification) -> Send:
    """The send with no target that closes an incident nobody configured can be told of: its RESOLVED row is the
    incident's latest, so ``alerts_open`` no longer lists it."""
    why = notification.details.get("closed")
    closed = f"{why}; {NOBODY_TOLD}" if why and why != HELD_NOBODY_TOLD else why or NOBODY_TOLD
    _logger.warning(
        "incident %s (%s of %s) closed: %s", notification.incident_id, notification.kind, notification.subject, closed
    )
    return Send(dataclasses.replace(notification, details={**notification.details, "closed": closed}), None)


def _notification(
    condition: Condition, incident: str, opened_at: datetime.datetime, *, reminder: bool = False
) -> Notification:
    """A FIRING notification of ``condition``'s incident, with what the condition says now."""
    details = dict(condition.details)
    if condition.since is not None:
        details.setdefault("since", _iso(condition.since))
    return Notification(
        incident_id=incident,
        kind=condition.kind,
        subject=condition.subject,
        severity=condition.severity,
        state=FIRING,
        opened_at=opened_at,
        summary=condition.summary,
        details=details,
        owners=condition.owners,
        links=condition.links,
        reminder=reminder,
    )


# --- the rows --------------------------------------------------------------------------------------------------


def rows(outcomes: Sequence[Outcome], now: datetime.datetime) -> Rows:
    """The ``alerts`` rows of what was sent at ``now``: one per message (delivered or not, the error in
    ``details.error``), and one per closing with no target (:func:`to_nobody`), for
    :meth:`otel_datasink.writer.Writer.write`."""
    return {ALERTS_TABLE: [_row(send, delivered, error, now) for send, delivered, error in outcomes]}


def _row(send: Send, delivered: bool | None, error: str | None, now: datetime.datetime) -> dict[str, Any]:
    notification = send.notification
    details: dict[str, Any] = dict(notification.details)
    if send.target is not None:
        details["target_id"] = target_id(send.target)
    details["reminder"] = notification.reminder
    if notification.owners:
        details["owners"] = list(notification.owners)
    if notification.links:
        details["links"] = dict(notification.links)
    if notification.resolved_at is not None:
        details["resolved_at"] = _iso(notification.resolved_at)
    if error is not None:
        details["error"] = error
    at = _ms(now)
    return {
        "incident_id": notification.incident_id,
        "kind": notification.kind,
        "subject": notification.subject,
        "severity": notification.severity,
        "state": notification.state,
        "opened_at": _ms(notification.opened_at),
        # A closing with no target notified nobody: no time, no target, neither delivered nor not.
        "notified_at": at if send.target is not None else None,
        "targets": delivery.redact(send.target) if send.target is not None else None,
        "delivered": delivered if send.target is not None else None,
        "summary": notification.summary,
        "details": json.dumps(details, sort_keys=True, default=str),
        "event_time": at,
        "ingested_at": at,
    }


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _ms(moment: datetime.datetime) -> int:
    """Epoch milliseconds of an instant (a naive one is taken as UTC), in integers (no float rounding)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return (moment - _EPOCH) // datetime.timedelta(milliseconds=1)


def _iso(moment: datetime.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).isoformat()
