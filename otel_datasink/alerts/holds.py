"""Acknowledgements and silences: rows of the ``alerts`` table that hold an incident's notifications back.

- ``otel-datasink alert ack INCIDENT [--until TIME] [--by NAME]`` writes an ``ACKNOWLEDGED`` row of the incident
  (its kind, subject, severity and ``opened_at``; ``details`` ``acknowledged_by`` and ``acknowledged_until``, null
  for as long as the incident is open). Until then no FIRING message of it is sent: no reminder, no retry, no post
  to an Alertmanager (which ends the alert at its ``endsAt``). Its RESOLVED is sent as usual; the incident that
  opens when its condition holds again is a new one, not acknowledged.
- ``otel-datasink alert silence --job/--dataset/--owner GLOB --until TIME [--by NAME]`` writes a ``SILENCED`` row
  (kind ``silence``, subject the glob, ``details`` ``match``, ``silenced_by``, ``silenced_until``). Until then the
  conditions it selects notify nobody, incidents open or new: a job glob selects a job's conditions and a stale
  dataset last updated by the job (as a rule's ``job`` does), a dataset glob a stale dataset, an owner glob the
  conditions of a job or dataset any of whose owners recorded in the data matches it
  (:func:`.conditions.subject_owners`).

The first evaluation a silence holds an incident in writes one FIRING row with no target (``targets`` and
``delivered`` null; ``details`` ``silence_id``, ``silenced_by``, ``silenced_until``): it opens a new incident, so that
``alerts_open`` lists it (silenced), or marks an open one. Once the silence is over, the incident's targets are told
of it as of an incident they never heard of. These rows are no notification: every reader of incidents' states
(``alerts_open``, :mod:`.incidents`) reads FIRING and RESOLVED rows for them.
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import json
from collections.abc import Callable, Mapping
from typing import Any

import duckdb

from otel_datasink.alerts import incidents
from otel_datasink.alerts.model import (
    ACKNOWLEDGED,
    FIRING,
    RESOLVED,
    SILENCE_KIND,
    SILENCED,
    Condition,
    Notification,
    Outcome,
    Send,
)
from otel_datasink.alerts.rules import JOB_KINDS
from otel_datasink.schema import Rows

MATCHES = ("job", "dataset", "owner")
"""What a silence's glob is matched against."""

Owners = Mapping[tuple[str, str], tuple[str, ...]]
"""(``job`` or ``dataset``, name) -> the owners recorded in the data (:func:`.conditions.subject_owners`)."""


@dataclasses.dataclass(frozen=True)
class Silence:
    """One silence: the subjects its glob selects notify nobody until ``until``."""

    silence_id: str
    match: str
    """One of :data:`MATCHES`."""
    glob: str
    by: str
    until: datetime.datetime

    def selects(self, condition: Condition, owners: Owners) -> bool:
        """Whether the silence holds ``condition``: its subject (a stale dataset's last job, for a job glob), or
        one of its owners recorded in the data, matches the glob."""
        job = condition.subject if condition.kind in JOB_KINDS else condition.details.get("job_name")
        if self.match == "job":
            return job is not None and fnmatch.fnmatchcase(job, self.glob)
        if self.match == "dataset":
            return condition.kind not in JOB_KINDS and fnmatch.fnmatchcase(condition.subject, self.glob)
        names = {("job", job)} if job is not None else set()
        if condition.kind not in JOB_KINDS:
            names.add(("dataset", condition.subject))
        return any(fnmatch.fnmatchcase(owner, self.glob) for name in names for owner in owners.get(name, ()))


@dataclasses.dataclass(frozen=True)
class Hold:
    """Why an incident's FIRING messages are held back now, and whether its row is still to write."""

    reason: str
    """``acknowledged by alice until 2026-12-08 14:00 UTC``, ``silenced by bob until ... (owner 'team-a*')``."""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    """What the silence's row of the incident records (none for an acknowledgement: its own row records it)."""
    record: bool = False


@dataclasses.dataclass(frozen=True)
class Holds:
    """The acknowledgements and silences in force at one instant."""

    acks: Mapping[str, tuple[str, datetime.datetime | None]] = dataclasses.field(default_factory=dict)
    """incident id -> (by, until); until None: while the incident is open."""
    silences: tuple[Silence, ...] = ()
    marked: frozenset[tuple[str, str]] = frozenset()
    """(incident id, silence id) of the incidents whose rows record the silence already."""
    owners: Owners = dataclasses.field(default_factory=dict)

    def of(self, condition: Condition, incident: str | None) -> Hold | None:
        """The hold on ``condition``, whose open incident is ``incident`` (None: none open), if any."""
        if incident is not None and incident in self.acks:
            by, until = self.acks[incident]
            return Hold(f"acknowledged by {by} {_until(until, 'while open')}")
        silence = next((s for s in self.silences if s.selects(condition, self.owners)), None)
        if silence is None:
            return None
        details = {"silence_id": silence.silence_id, "silenced_by": silence.by, "silenced_until": _iso(silence.until)}
        reason = f"silenced by {silence.by} {_until(silence.until, '')} ({silence.match} {silence.glob!r})"
        return Hold(reason, details, record=incident is None or (incident, silence.silence_id) not in self.marked)


_ACKS_SQL = """
SELECT incident_id, arg_max(details, event_time) AS details
FROM alerts
WHERE state = ? AND dt >= ?
GROUP BY incident_id
"""
_SILENCES_SQL = """
SELECT incident_id, details FROM alerts WHERE state = ? AND kind = ? AND dt >= ?
"""
_MARKED_SQL = """
SELECT DISTINCT incident_id, details ->> '$.silence_id' FROM alerts
WHERE state = ? AND details ->> '$.silence_id' IS NOT NULL AND dt >= ?
"""


def read(con: duckdb.DuckDBPyConnection, now: datetime.datetime, owners: Callable[[], Owners]) -> Holds:
    """The acknowledgements (each incident's latest) and silences in force at ``now``, from the ``alerts`` rows of
    the history :mod:`.incidents` reads; ``owners()`` is asked only when a silence selects by owner (it reads the
    runs)."""
    since = incidents.history_start(now)
    acks = {}
    for incident, details in con.execute(_ACKS_SQL, [ACKNOWLEDGED, since]).fetchall():
        facts = _loads(details)
        until = _instant(facts.get("acknowledged_until"))
        if until is None or until > now:
            acks[incident] = (str(facts.get("acknowledged_by")), until)
    silences = []
    for silence_id, details in con.execute(_SILENCES_SQL, [SILENCED, SILENCE_KIND, since]).fetchall():
        facts = _loads(details)
        until = _instant(facts.get("silenced_until"))
        if until is not None and until > now and facts.get("match") in MATCHES:
            silences.append(Silence(silence_id, facts["match"], str(facts["glob"]), str(facts["silenced_by"]), until))
    marked = frozenset(tuple(row) for row in con.execute(_MARKED_SQL, [FIRING, since]).fetchall())
    by_owner = any(silence.match == "owner" for silence in silences)
    return Holds(acks, tuple(silences), marked, owners() if by_owner else {})


# --- the rows of ``alert ack`` and ``alert silence`` -------------------------------------------------------------


def incident_state(con: duckdb.DuckDBPyConnection, incident: str, now: datetime.datetime) -> Notification | None:
    """The incident ``incident`` as of its latest FIRING or RESOLVED row (its ``state``), or None when the history
    has none."""
    for known in incidents.history(con, now):
        if known.incident_id == incident:
            return known
    return None


def ack_rows(incident: Notification, by: str, until: datetime.datetime | None, now: datetime.datetime) -> Rows:
    """The ``ACKNOWLEDGED`` row of ``incident``, by ``by`` until ``until`` (None: while it is open)."""
    details = {"acknowledged_by": by, "acknowledged_until": _iso(until) if until is not None else None}
    row = dataclasses.replace(
        incident,
        state=ACKNOWLEDGED,
        summary=f"{incident.kind} {incident.subject} acknowledged by {by} {_until(until, 'while open')}",
        details=details,
        resolved_at=None,
    )
    return incidents.rows([Outcome(Send(row, None), None, None)], now)


def silence_rows(match: str, glob: str, by: str, until: datetime.datetime, now: datetime.datetime) -> Rows:
    """The ``SILENCED`` row of a silence of the subjects ``glob`` selects by ``match``, by ``by`` until ``until``."""
    if match not in MATCHES:
        raise ValueError(f"a silence matches one of {', '.join(MATCHES)}, not {match!r}")
    row = Notification(
        incident_id=incidents.incident_id(SILENCE_KIND, f"{match}\x00{glob}", now),
        kind=SILENCE_KIND,
        subject=glob,
        severity="info",
        state=SILENCED,
        opened_at=now,
        summary=f"{match} {glob!r} silenced by {by} {_until(until, '')}",
        details={"match": match, "glob": glob, "silenced_by": by, "silenced_until": _iso(until)},
    )
    return incidents.rows([Outcome(Send(row, None), None, None)], now)


def is_open(incident: Notification) -> bool:
    """Whether ``incident`` (:func:`incident_state`) is open."""
    return incident.state != RESOLVED


def _until(until: datetime.datetime | None, otherwise: str) -> str:
    return f"until {until:%Y-%m-%d %H:%M} UTC" if until is not None else otherwise


def _iso(moment: datetime.datetime) -> str:
    """In milliseconds at most: what Athena's ``from_iso8601_timestamp`` (``alerts_open``) reads."""
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _instant(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def _loads(details: str | None) -> dict[str, Any]:
    try:
        loaded = json.loads(details or "{}")
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}
