"""The types passed between the parts of alerting: a condition that holds now, a notification, a send of it to one
target, and what became of that send."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, NamedTuple

KINDS = (
    "stale_dataset",
    "failing_job",
    "hung_run",
    "volume_anomaly",
    "missing_run",
    "failing_check",
    "missed_deadline",
    "deadline_at_risk",
)
"""Condition kinds, as the ``alerts.kind`` column names them."""
SEVERITIES = ("critical", "warning", "info")
FIRING = "FIRING"
RESOLVED = "RESOLVED"
ACKNOWLEDGED = "ACKNOWLEDGED"
"""The state of an ``alerts`` row that acknowledges an incident (``otel-datasink alert ack``): not a notification;
``details`` holds ``acknowledged_by`` and ``acknowledged_until`` (null: until the incident resolves)."""
SILENCED = "SILENCED"
"""The state of an ``alerts`` row that silences the subjects a glob selects (``otel-datasink alert silence``): its
``kind`` is :data:`SILENCE_KIND`, its ``subject`` the glob, its ``details`` ``match`` (job, dataset or owner),
``silenced_by`` and ``silenced_until``."""
SILENCE_KIND = "silence"
"""The ``kind`` of a silence's row: it is no incident of any condition."""


def age(delta: datetime.timedelta | float) -> str:
    """A duration (a timedelta, or minutes) in the largest sensible unit, the one wording of every age in a message:
    ``45 min`` (under 2 h), ``3 h 5 min`` (under 2 days), ``219 d 4 h``; never negative."""
    minutes = round(delta.total_seconds() / 60 if isinstance(delta, datetime.timedelta) else float(delta))
    minutes = max(0, minutes)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@dataclasses.dataclass(frozen=True)
class Condition:
    """A condition that holds now for one subject (a job or a dataset), with what its rules say of it."""

    kind: str
    """One of :data:`KINDS`."""
    subject: str
    """The job name (failing_job, hung_run, volume_anomaly, missing_run), the dataset (stale_dataset), or the check
    and its dataset (failing_check: ``not_null_id on orders``)."""
    severity: str
    """One of :data:`SEVERITIES`."""
    since: datetime.datetime | None
    """When the condition began, as far as the views tell (UTC): e.g. when the dataset passed its SLA."""
    summary: str
    """One line: what, which subject, how bad (``orders is 185 min old, SLA 60 min``)."""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    """JSON-able facts: freshness_minutes, freshness_sla_minutes, current_streak, z_score, last_error_type,
    last_error_message, run_id, trace_id, ... (what the view row had)."""
    owners: tuple[str, ...] = ()
    """``@handle`` or e-mail addresses, from the rules."""
    targets: tuple[str, ...] = ()
    """Where to notify: Apprise URLs or an Alertmanager URL (see :mod:`.delivery`)."""
    suppress: datetime.timedelta = datetime.timedelta(hours=4)
    """An incident still open is notified again only after this interval."""
    group: str = "incident"
    """``incident`` (one message per incident) or ``digest`` (one message per target per evaluation)."""
    links: dict[str, str] = dataclasses.field(default_factory=dict)
    """name -> URL (``trace``, ``run``), from the ``--trace-url`` / run URL templates."""

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the incident this condition belongs to: (kind, subject)."""
        return (self.kind, self.subject)


@dataclasses.dataclass(frozen=True)
class Notification:
    """One incident event to tell a target about: an incident opened or still open (FIRING), or over (RESOLVED)."""

    incident_id: str
    kind: str
    subject: str
    severity: str
    state: str
    """:data:`FIRING` or :data:`RESOLVED`."""
    opened_at: datetime.datetime
    """When the incident opened (UTC)."""
    summary: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    owners: tuple[str, ...] = ()
    links: dict[str, str] = dataclasses.field(default_factory=dict)
    resolved_at: datetime.datetime | None = None
    """When the condition was seen to clear (RESOLVED only)."""
    reminder: bool = False
    """A FIRING notification of an incident already notified (its suppression interval passed)."""


@dataclasses.dataclass(frozen=True)
class Send:
    """One message to one target."""

    notification: Notification
    target: str | None
    """The target as configured (with its secrets): what :func:`.delivery.send` takes. None: nobody to tell, the
    RESOLVED row that closes an incident none of whose targets is configured any more, or the FIRING row that
    records an incident a silence holds (:attr:`held`), written and not sent."""
    held: str | None = None
    """Why nobody is told of this FIRING incident now: it is acknowledged or silenced (``acknowledged by alice
    until ...``). Such a send has no target; :attr:`record` says whether its row is written."""
    record: bool = True
    """Whether a send with no target is written as a row: a closing, or the first evaluation a silence holds an
    incident (its row opens it, or marks it silenced, for ``alerts_open``); not a hold already recorded."""


class Outcome(NamedTuple):
    """What became of one send: the row that records it (:func:`.incidents.rows`) and the line that reports it."""

    send: Send
    delivered: bool | None
    """Whether the target took it; None for a send with no target (nothing was sent)."""
    error: str | None
    """Why not (a :class:`DeliveryError`'s message), when not."""


class DeliveryError(Exception):
    """A target did not take a notification; the message says why, in one line."""
